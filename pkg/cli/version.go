package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is `gear version -json`.
type buildInfo struct {
	Version  string `json:"version"`            // module version, "(devel)" for a source build
	Revision string `json:"revision,omitempty"` // vcs.revision
	Time     string `json:"time,omitempty"`     // vcs.time (commit time)
	Modified bool   `json:"modified,omitempty"` // built from a work tree with uncommitted changes
	Go       string `json:"go"`                 // Go version and platform
}

// readBuildInfo reads what the Go toolchain stamped into the binary.
func readBuildInfo() buildInfo {
	v := buildInfo{Version: "unknown", Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func version(_ context.Context, c *Call) error {
	v := readBuildInfo()
	return c.Output(v, func(w io.Writer) {
		fmt.Fprintf(w, "gear %s\n", v.Version)
		if v.Revision != "" {
			mod := ""
			if v.Modified {
				mod = " (modified)"
			}
			fmt.Fprintf(w, "revision %s %s%s\n", v.Revision, v.Time, mod)
		}
		fmt.Fprintf(w, "%s\n", v.Go)
	})
}
