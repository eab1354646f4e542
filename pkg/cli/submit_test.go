package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func writeTarGz(t *testing.T, path string, entries ...tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSubmitRefusesBeforeUpload: what a worker would refuse is refused by
// the CLI, with the reason, before anything reaches a master.
func TestSubmitRefusesBeforeUpload(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "not expected", http.StatusTeapot)
	}))
	defer srv.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(conf, []byte("gear.bundle.max-unpacked-size = 1MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := tarEntry{name: "gear-app.conf", body: "name = x\nprocesses { p { command = [\"./run\"] } }\n", typ: tar.TypeReg, mode: 0o644}
	run := tarEntry{name: "run", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o755}

	linkOut := filepath.Join(dir, "linkout.tar.gz")
	writeTarGz(t, linkOut, manifest, run, tarEntry{name: "lib/etc", link: "../../../etc", typ: tar.TypeSymlink, mode: 0o777})
	big := filepath.Join(dir, "big.tar.gz")
	writeTarGz(t, big, manifest, run, tarEntry{name: "zeros", body: strings.Repeat("\x00", 2<<20), typ: tar.TypeReg, mode: 0o644})
	exe := filepath.Join(dir, "app.exe")
	if err := os.WriteFile(exe, []byte("MZ"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		bundle string
		msg    []string
	}{
		{linkOut, []string{`symlink "lib/etc"`, "outside the bundle"}},
		{big, []string{"gear.bundle.max-unpacked-size", "1MiB"}},
		{exe, []string{"app.exe", ".jar", ".tar.gz", ".zip"}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.bundle), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Environ: func() []string { return nil }}
			addr := strings.TrimPrefix(srv.URL, "http://")
			err := Run(context.Background(), env, Commands(), []string{"-master", addr, "-conf", conf, "app", "submit", c.bundle})
			if err == nil {
				t.Fatal("submit succeeded")
			}
			for _, m := range c.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the CLI sent %d request(s) to the master before refusing", n)
			}
		})
	}
}
