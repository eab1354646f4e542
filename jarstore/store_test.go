package jarstore_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/jarstore/storetest"
)

func openT(t *testing.T, root, local string) jarstore.Store {
	t.Helper()
	s, err := jarstore.Open(context.Background(), root, local, nil)
	if err != nil {
		t.Fatalf("Open(%q, %q): %v", root, local, err)
	}
	return s
}

func TestConformanceMem(t *testing.T) {
	storetest.Run(t, func(t *testing.T) jarstore.Store { return openT(t, "mem://", "") })
}

func TestConformanceLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) jarstore.Store {
		s := openT(t, "", filepath.Join(t.TempDir(), "data", "jars"))
		if !jarstore.IsLocal(s) {
			t.Fatal("IsLocal(local store) = false")
		}
		return s
	})
}

func TestConformanceFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) jarstore.Store {
		s := openT(t, "file://"+t.TempDir(), "")
		if jarstore.IsLocal(s) {
			t.Fatal("IsLocal(file:// store) = true")
		}
		return s
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		root, local string
		want        string
	}{
		{"s3://bucket/jars", "", `unknown scheme "s3" (supported: file, hdfs, mem)`},
		{"nfs/jars", "", "is a relative path"},
		{"file://" + dir + "/missing", "", "does not exist: create it on the shared mount"},
		{"file://" + file, "", "is not a directory"},
		{"file://otherhost/x", "", "not host \"otherhost\""},
		{"file:relative", "", "want an absolute path"},
		{"mem://x", "", "mem:// takes no host or path"},
		{"", "", "no root path and no local directory"},
		{"hdfs:///jars", "", "names no namenode"},
	}
	for _, c := range cases {
		_, err := jarstore.Open(context.Background(), c.root, c.local, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want error containing %q", c.root, err, c.want)
		}
	}
}

// TestGCRemovesInterruptedUploads: the temporary files that uploads
// interrupted by a crash leave in a shared store go with `jarstore gc
// -grace D` once older than D (also D = 0), never one of an upload in
// progress.
func TestGCRemovesInterruptedUploads(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".tmp-stale")
	fresh := filepath.Join(dir, ".tmp-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	s := openT(t, "file://"+dir, "")
	defer s.Close()
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if !exists(stale) || !exists(fresh) {
		t.Fatal("Open removed temporary files: only gc may, with its grace")
	}
	infos, err := s.List(context.Background())
	if err != nil || len(infos) != 0 {
		t.Errorf("List = %v, %v; want no objects (temp files are not objects)", infos, err)
	}
	blobs := jarstore.NewBlobs(s, nil)
	ctx := context.Background()

	// An upload in progress through the store.
	pr, pw := io.Pipe()
	live := bytes.Repeat([]byte("live upload "), 50_000)
	done := make(chan error, 1)
	go func() { _, _, err := blobs.Put(ctx, pr, 0); done <- err }()
	if _, err := pw.Write(live[:100_000]); err != nil {
		t.Fatal(err)
	}

	if _, err := blobs.GC(ctx, nil, time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	if exists(stale) || !exists(fresh) {
		t.Fatalf("gc -grace 1h: stale leftover exists=%v (want removed), fresh exists=%v (want kept)", exists(stale), exists(fresh))
	}
	r, err := blobs.GC(ctx, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Temps) != 1 || r.Temps[0].Name != ".tmp-fresh" || r.Temps[0].Size != int64(len("partial")) {
		t.Fatalf("gc -grace 0s reports temporary files %+v, want .tmp-fresh", r.Temps)
	}
	if exists(fresh) {
		t.Fatal("gc -grace 0s kept a leftover temporary file")
	}
	if _, err := pw.Write(live[100_000:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("an upload in progress during gc -grace 0s failed: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), "sha256-") {
		t.Fatalf("store holds %v, want just the uploaded blob", ents)
	}
}

// TestOpenPlainPath: a root path without a scheme is Gearpump's "directory
// on each master": opened (and created) as a local store, which IsLocal
// reports so the master warns that it does not survive its loss.
func TestOpenPlainPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "jarstore")
	s, err := jarstore.Open(context.Background(), dir+"/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !jarstore.IsLocal(s) {
		t.Error("IsLocal = false for a plain directory root")
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("root %s not created: %v", dir, err)
	}
}
