package jarstore_test

import (
	"context"
	"errors"
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
		{"/nfs/jars", "", "has no scheme: write file:///nfs/jars"},
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

func TestStaleTempFilesSwept(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".tmp-stale")
	fresh := filepath.Join(dir, ".tmp-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	s := openT(t, "file://"+dir, "")
	defer s.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file survived Open: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (maybe another master's upload in flight) was removed: %v", err)
	}
	infos, err := s.List(context.Background())
	if err != nil || len(infos) != 0 {
		t.Errorf("List = %v, %v; want no objects (temp files are not objects)", infos, err)
	}
}
