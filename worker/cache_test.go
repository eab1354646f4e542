package worker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
)

func TestCacheReadsTheSharedStore(t *testing.T) {
	ctx := context.Background()
	blobs := jarstore.NewBlobs(jarstore.NewMem(nil), slog.New(slog.DiscardHandler))
	content := bytes.Repeat([]byte("bundle"), 1000)
	digest, _, err := blobs.Put(ctx, bytes.NewReader(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	// No master is reachable: the shared store alone must do.
	c, err := newCache(t.TempDir(), cluster.NewClient([]string{"127.0.0.1:1"}, ""), blobs, slog.New(slog.DiscardHandler), cacheOptions{Size: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	path, err := c.file(ctx, cluster.Bundle{Digest: digest})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, content) {
		t.Fatal("cached bundle differs from the stored one")
	}
	// A digest the shared store lacks falls back to the masters, and the
	// error says none answered.
	missing := "sha256:" + string(bytes.Repeat([]byte("0"), 64))
	if _, err := c.file(ctx, cluster.Bundle{Digest: missing}); !errors.Is(err, cluster.ErrNoMaster) {
		t.Fatalf("missing bundle: %v", err)
	}
}

func TestPlanEviction(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const grace = 30 * time.Second
	cases := []struct {
		name    string
		entries []cacheEntry
		cap     int64
		want    []eviction
	}{
		{
			name: "in use is never evicted, however old and big",
			entries: []cacheEntry{
				{Digest: "a", HasFile: true, FileSize: 100, HasDir: true, DirSize: 1000, LastUsed: ago(time.Hour), InUse: true},
			},
			cap: 0,
		},
		{
			name: "unused unpacked dir goes after the grace, the download stays under the cap",
			entries: []cacheEntry{
				{Digest: "a", HasFile: true, FileSize: 100, HasDir: true, DirSize: 1000, LastUsed: ago(grace)},
				{Digest: "b", HasFile: true, FileSize: 100, HasDir: true, DirSize: 1000, LastUsed: ago(grace - time.Second)},
			},
			cap:  10_000,
			want: []eviction{{Digest: "a", Dir: true}},
		},
		{
			name: "over the cap the least recently used go whole, even within the grace",
			entries: []cacheEntry{
				{Digest: "old", HasFile: true, FileSize: 300, LastUsed: ago(3 * time.Hour)},
				{Digest: "mid", HasFile: true, FileSize: 300, LastUsed: ago(2 * time.Hour)},
				{Digest: "new", HasFile: true, FileSize: 300, HasDir: true, DirSize: 500, LastUsed: ago(time.Second)},
				{Digest: "used", HasFile: true, FileSize: 5000, HasDir: true, DirSize: 5000, LastUsed: ago(5 * time.Hour), InUse: true},
			},
			cap:  900,
			want: []eviction{{Digest: "mid", File: true}, {Digest: "old", File: true}},
		},
		{
			name: "cap 0 keeps nothing unused",
			entries: []cacheEntry{
				{Digest: "a", HasFile: true, FileSize: 1, LastUsed: ago(time.Second)},
				{Digest: "b", HasFile: true, FileSize: 1, HasDir: true, DirSize: 1, LastUsed: ago(time.Second), InUse: true},
			},
			cap:  0,
			want: []eviction{{Digest: "a", File: true}},
		},
		{
			name: "ties go by digest",
			entries: []cacheEntry{
				{Digest: "y", HasFile: true, FileSize: 10, LastUsed: ago(time.Minute)},
				{Digest: "x", HasFile: true, FileSize: 10, LastUsed: ago(time.Minute)},
			},
			cap:  10,
			want: []eviction{{Digest: "x", File: true}},
		},
		{
			name: "exactly at the cap stays",
			entries: []cacheEntry{
				{Digest: "a", HasFile: true, FileSize: 10, LastUsed: ago(time.Hour)},
			},
			cap: 10,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := planEviction(c.entries, now, grace, c.cap)
			if len(got) == 0 && len(c.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("planEviction = %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestCacheEvicts drives a real cache: bundles fetched from a store,
// unpacked, then no longer used.
func TestCacheEvicts(t *testing.T) {
	ctx := context.Background()
	blobs := jarstore.NewBlobs(jarstore.NewMem(nil), slog.New(slog.DiscardHandler))
	put := func(name string) cluster.Bundle {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		body := bytes.Repeat([]byte(name), 1000)
		_ = tw.WriteHeader(&tar.Header{Name: "data", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(body)
		_ = tw.Close()
		_ = zw.Close()
		d, _, err := blobs.Put(ctx, &buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		return cluster.Bundle{Digest: d, Kind: cluster.KindTarGz}
	}
	a, b := put("a"), put("b")
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	c, err := newCache(dir, cluster.NewClient([]string{"127.0.0.1:1"}, ""), blobs, slog.New(slog.DiscardHandler),
		cacheOptions{Size: 1 << 30, Grace: 10 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, bu := range []cluster.Bundle{a, b} {
		f, err := c.file(ctx, bu)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.unpacked(ctx, bu, f)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	inUse := map[string]bool{a.Digest: true}
	using := func() (map[string]bool, bool) { return inUse, true }
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	c.evict(using) // within the grace: nothing goes
	if !exists(dirs[0]) || !exists(dirs[1]) {
		t.Fatal("evicted within the grace period")
	}
	now = now.Add(10 * time.Second)
	c.evict(func() (map[string]bool, bool) { return nil, false }) // cannot tell: nothing goes
	if !exists(dirs[1]) {
		t.Fatal("evicted while the bundles in use were unknown")
	}
	c.evict(using)
	if !exists(dirs[0]) {
		t.Fatal("evicted the unpacked bundle in use")
	}
	if exists(dirs[1]) {
		t.Fatal("the unpacked bundle no executor uses is still there after the grace")
	}
	if !exists(filepath.Join(dir, strings.TrimPrefix(b.Digest, "sha256:")+".bundle")) {
		t.Fatal("the downloaded bundle went although the cache is under its cap")
	}
	// Unpacking again works after an eviction.
	f, _ := c.file(ctx, b)
	if _, err := c.unpacked(ctx, b, f); err != nil || !exists(dirs[1]) {
		t.Fatalf("unpack after eviction: %v", err)
	}
	// Cap 0: every unused thing goes, the one in use stays.
	c.opts.Size = 0
	now = now.Add(time.Hour)
	c.evict(using)
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	ha := strings.TrimPrefix(a.Digest, "sha256:")
	if want := []string{ha + ".bundle", ha + ".d"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("cache holds %v, want only the bundle in use %v", names, want)
	}
	// A restarted worker finds what is cached and removes leftovers.
	if err := os.WriteFile(filepath.Join(dir, ".fetch-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	c2, err := newCache(dir, c.client, blobs, slog.New(slog.DiscardHandler), cacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(dir, ".fetch-123")) {
		t.Fatal("a leftover download survived a restart")
	}
	if st := c2.entries[a.Digest]; st == nil || !st.hasDir || !st.hasFile || st.dirSize != 1000 {
		t.Fatalf("restarted cache sees %+v for the cached bundle", st)
	}
}

func TestCacheRefusesUnknownKind(t *testing.T) {
	c, err := newCache(t.TempDir(), cluster.NewClient([]string{"127.0.0.1:1"}, ""), nil, slog.New(slog.DiscardHandler), cacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(p, []byte("MZ not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	_, err = c.unpacked(context.Background(), cluster.Bundle{Digest: digest, Kind: "exe"}, p)
	if err == nil || !strings.Contains(err.Error(), `bundle kind "exe" is unknown`) || !strings.Contains(err.Error(), `"tar.gz"`) {
		t.Fatalf("unpacked(kind exe) = %v, want an error naming the kind and listing the known ones", err)
	}
}

// A bundle whose copy in a shared file:// store is corrupt is refused
// (not fetched from a master either) and leaves nothing in the cache.
func TestCacheRefusesCorruptSharedBundle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := jarstore.Open(ctx, "file://"+dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	blobs := jarstore.NewBlobs(store, slog.New(slog.DiscardHandler))
	content := bytes.Repeat([]byte("bundle"), 100000)
	digest, _, err := blobs.Put(ctx, bytes.NewReader(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := jarstore.ObjectName(digest)
	content[1000] ^= 1
	if err := os.WriteFile(filepath.Join(dir, obj), content, 0o644); err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	c, err := newCache(cacheDir, cluster.NewClient([]string{"127.0.0.1:1"}, ""), blobs, slog.New(slog.DiscardHandler), cacheOptions{Size: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.file(ctx, cluster.Bundle{Digest: digest}); !errors.Is(err, jarstore.ErrCorrupt) {
		t.Fatalf("corrupt bundle: %v, want ErrCorrupt", err)
	}
	ents, _ := os.ReadDir(cacheDir)
	for _, e := range ents {
		if !e.IsDir() {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}
