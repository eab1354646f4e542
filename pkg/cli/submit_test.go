package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/bundle"
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
// the CLI, with the reason, before a master has received the whole bundle
// (the check runs alongside the upload, which holds back its last bytes
// until the check has passed), so a master can never store it. A bundle of
// an unknown type is refused before any request.
func TestSubmitRefusesBeforeUpload(t *testing.T) {
	var hits, whole atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		if r.ContentLength > 0 && n == r.ContentLength {
			whole.Add(1)
		}
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
	// Random bytes do not compress: the archive is larger than what the
	// upload holds back, so the upload is under way when the check fails.
	noise := tarEntry{name: "noise", body: string(randomBytes(t, 900<<10)), typ: tar.TypeReg, mode: 0o644}

	linkOut := filepath.Join(dir, "linkout.tar.gz")
	writeTarGz(t, linkOut, manifest, run, noise, tarEntry{name: "lib/etc", link: "../../../etc", typ: tar.TypeSymlink, mode: 0o777})
	big := filepath.Join(dir, "big.tar.gz")
	writeTarGz(t, big, manifest, run, tarEntry{name: "zeros", body: strings.Repeat("\x00", 2<<20), typ: tar.TypeReg, mode: 0o644})
	noManifest := filepath.Join(dir, "nomanifest.tar.gz")
	writeTarGz(t, noManifest, run, noise)
	exe := filepath.Join(dir, "app.exe")
	if err := os.WriteFile(exe, []byte("MZ"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		bundle    string
		msg       []string
		noRequest bool
	}{
		{linkOut, []string{`symlink "lib/etc"`, "outside the bundle"}, false},
		{big, []string{"gear.bundle.max-unpacked-size", "1MiB"}, false},
		{noManifest, []string{"gear-app.conf"}, false},
		{exe, []string{"app.exe", ".jar", ".tar.gz", ".zip"}, true},
		{filepath.Join(dir, "missing.tar.gz"), []string{"missing.tar.gz", "no such file"}, true},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.bundle), func(t *testing.T) {
			hits.Store(0)
			whole.Store(0)
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
			if strings.Contains(err.Error(), "upload") || strings.Contains(err.Error(), "not expected") {
				t.Errorf("error %q is about the cut-off upload, not the bundle", err)
			}
			if n := whole.Load(); n != 0 {
				t.Fatalf("the master received the whole bundle %d time(s) before the CLI refused it", n)
			}
			if n := hits.Load(); c.noRequest && n != 0 {
				t.Fatalf("the CLI sent %d request(s) to the master for a bundle it refuses at once", n)
			}
		})
	}
}

// TestSubmitCutsUploadWhenCheckFails: the upload runs while the CLI
// checks the bundle, gets as far as the held-back tail, and is cut off
// when the check fails: the master never has the whole bundle, and the
// CLI reports the check's error.
func TestSubmitCutsUploadWhenCheckFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.tar.gz")
	size := 4 << 20
	if err := os.WriteFile(path, randomBytes(t, size), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	atGate := make(chan struct{}) // the master has all but the held-back tail
	var gateOnce sync.Once
	type result struct {
		n   int64
		err error
	}
	received := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		var n int64
		var err error
		for {
			var k int
			k, err = r.Body.Read(buf)
			n += int64(k)
			if n >= int64(size-uploadHoldBack) {
				gateOnce.Do(func() { close(atGate) })
			}
			if err != nil {
				break
			}
		}
		received <- result{n, err}
		http.Error(w, "not expected", http.StatusTeapot)
	}))
	defer srv.Close()
	refused := errors.New("refused by the test's check")
	inspectBundle = func(string, string, []string, bundle.Limits) (*bundle.Manifest, bundle.Kind, error) {
		select {
		case <-atGate:
		case <-time.After(20 * time.Second):
		}
		return nil, bundle.KindTarGz, refused
	}
	defer func() { inspectBundle = bundle.InspectLimits }()
	var stdout, stderr bytes.Buffer
	env := Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Environ: func() []string { return nil }}
	err := Run(context.Background(), env, Commands(), []string{"-master", strings.TrimPrefix(srv.URL, "http://"), "-conf", conf, "app", "submit", path})
	if !errors.Is(err, refused) {
		t.Fatalf("submit = %v; want the check's error", err)
	}
	select {
	case r := <-received:
		if r.n >= int64(size) || r.err == io.EOF {
			t.Fatalf("the master received %d of %d bytes, ending with %v; want the upload cut off before its tail", r.n, size, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the master's handler never saw the upload end")
	}
}

// TestGatedBody: an upload's body yields all but its last uploadHoldBack
// bytes at once, the rest only after the check passed, and an error, never
// those bytes, when the check fails.
func TestGatedBody(t *testing.T) {
	data := randomBytes(t, 3*uploadHoldBack+17)
	free := len(data) - uploadHoldBack
	for _, pass := range []bool{true, false} {
		gate := newUploadGate()
		body := newGatedBody(context.Background(), bytes.NewReader(data), io.NopCloser(nil), int64(len(data)), gate)
		got := make([]byte, len(data))
		if _, err := io.ReadFull(body, got[:free]); err != nil {
			t.Fatalf("reading the first %d bytes: %v", free, err)
		}
		refused := errors.New("refused")
		if pass {
			gate.pass()
		} else {
			gate.fail(refused)
		}
		n, err := io.ReadFull(body, got[free:])
		switch {
		case pass && (err != nil || !bytes.Equal(got, data)):
			t.Fatalf("after the check passed: read %d of the last %d bytes, err %v, equal %t", n, uploadHoldBack, err, bytes.Equal(got, data))
		case !pass && (n != 0 || !errors.Is(err, refused)):
			t.Fatalf("after the check failed: read %d more bytes, err %v; want none and the check's error", n, err)
		}
		_ = body.Close()
	}
	// Closed while waiting for the check (the transport gave up): the
	// read returns instead of hanging.
	gate := newUploadGate()
	body := newGatedBody(context.Background(), bytes.NewReader(data[:10]), io.NopCloser(nil), 10, gate)
	_ = body.Close()
	if n, err := body.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Fatalf("read of a closed body waiting for the check = %d, %v; want an error", n, err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
