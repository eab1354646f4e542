package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/hocon"
)

// The loader opens only regular files: a FIFO (which would block the open
// forever, with no writer), a device or a directory, as the conf file or as
// an include, gets a clear error at once.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.conf")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	sub := filepath.Join(dir, "sub.conf")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	include := func(target string) string {
		p := filepath.Join(t.TempDir(), "gear.conf")
		src := "gear.hostname = \"a\"\ninclude required(file(\"" + target + "\"))\n"
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"FIFO", fifo, []string{fifo + ": not a regular file (a FIFO)"}},
		{"included FIFO", include(fifo), []string{"gear.conf:2:1", `cannot read include "` + fifo + `"`, fifo + ": not a regular file (a FIFO)"}},
		{"device", os.DevNull, []string{os.DevNull + ": not a regular file (a character device)"}},
		{"included device", include(os.DevNull), []string{os.DevNull + ": not a regular file (a character device)"}},
		{"directory", sub, []string{sub + ": not a regular file (a directory)"}},
		{"included directory", include(sub), []string{sub + ": not a regular file (a directory)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				cfg *Config
				err error
			}
			done := make(chan result, 1)
			go func() {
				cfg, _, err := Load(LoadOptions{File: tt.file})
				done <- result{cfg, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				// Unblock the loader so the test binary can end.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatalf("Load(%s) still blocked after 5s", tt.file)
			}
			if r.err == nil {
				t.Fatalf("Load(%s) succeeded, want an error", tt.file)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", r.err, w)
				}
			}
			if !strings.HasPrefix(tt.name, "included") && !errors.Is(r.err, hocon.ErrNotRegular) {
				t.Errorf("error %v does not match hocon.ErrNotRegular", r.err)
			}
		})
	}
}
