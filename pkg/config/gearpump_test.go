package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGearpumpShippedFiles: Gearpump's own conf/gear.conf and
// core/src/main/resources/geardefault.conf (copied unchanged into
// testdata/gearpump) load without errors; their relative
// jarstore.rootpath "jarstore/" resolves against the directory the master
// starts in; the Gearpump-only keys are one info line.
func TestGearpumpShippedFiles(t *testing.T) {
	wd := t.TempDir()
	for _, name := range []string{"gear.conf", "geardefault.conf"} {
		t.Run(name, func(t *testing.T) {
			cfg, rep, err := Load(LoadOptions{File: filepath.Join("testdata", "gearpump", name), Dir: wd})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if want := filepath.Join(wd, "jarstore"); cfg.JarStore.RootPath != want {
				t.Errorf("rootpath = %q, want %q", cfg.JarStore.RootPath, want)
			}
			if len(rep.Info) != 1 || !strings.Contains(rep.Info[0], "Gearpump-only settings") {
				t.Errorf("info = %q, want one line about Gearpump-only settings", rep.Info)
			}
			for _, w := range rep.Warnings {
				if !strings.Contains(w, "gearpump.cluster.masters is empty") {
					t.Errorf("unexpected warning %q", w)
				}
			}
		})
	}
}

func TestRootPathForms(t *testing.T) {
	wd := t.TempDir()
	cases := []struct{ in, want, err string }{
		{"jarstore/", filepath.Join(wd, "jarstore"), ""},
		{"./jars", filepath.Join(wd, "jars"), ""},
		{"/jarstore/", "/jarstore/", ""},
		{"file:///mnt/nfs/gear", "file:///mnt/nfs/gear", ""},
		{"hdfs://nn:9000/gear/", "hdfs://nn:9000/gear/", ""},
		{"s3://bucket/x", "", `scheme "s3" is not supported`},
	}
	for _, c := range cases {
		cfg, _, err := Load(LoadOptions{Overrides: map[string]any{"gear.jarstore.rootpath": c.in}, Dir: wd})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if cfg.JarStore.RootPath != c.want {
			t.Errorf("%q resolved to %q, want %q", c.in, cfg.JarStore.RootPath, c.want)
		}
	}
	// Without Dir, the working directory.
	cfg, _, err := Load(LoadOptions{Overrides: map[string]any{"gear.jarstore.rootpath": "jarstore/"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.JarStore.RootPath, must(os.Getwd()); got != filepath.Join(want, "jarstore") {
		t.Errorf("rootpath = %q, want under %q", got, want)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
