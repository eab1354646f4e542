package master

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A lone master with a file:// root that does not exist yet: the empty
// cluster creates the root and its marker, keeps the id in the replicated
// state and stores bundles; with the marker gone (the mount absent: an
// empty mount point) or replaced (another cluster's store), the store is
// refused with the reason, and nothing is written under the mount point.
func TestFileStoreMarker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := filepath.Join(t.TempDir(), "nfs", "gear")
	m, err := New(ctx, Options{IP: "127.0.0.1", DataDir: t.TempDir(), FailoverTimeout: 2 * time.Second, JarRoot: "file://" + root,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	go func() { _ = m.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for m.storeID() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not set the store id")
		}
		time.Sleep(20 * time.Millisecond)
	}
	id := m.storeID()
	if got, err := readStoreID(root); err != nil || got != id {
		t.Fatalf("marker in %s = %q, %v; want the replicated id %q", root, got, err, id)
	}
	if _, _, err := m.blobs.Put(ctx, bytes.NewReader([]byte("bundle")), 0); err != nil {
		t.Fatalf("Put with the marker in place: %v", err)
	}

	// The mount is gone: an empty directory at the mount point.
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ms := m.store.(*markedStore)
	ms.mu.Lock()
	ms.verified = time.Time{} // do not wait for verifyFor
	ms.mu.Unlock()
	_, _, err = m.blobs.Put(ctx, bytes.NewReader([]byte("other")), 0)
	if !errors.Is(err, ErrStoreMarker) || !strings.Contains(err.Error(), "the shared mount looks absent") {
		t.Fatalf("Put without the marker: %v, want the mount-absent refusal", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("something was written under the mount point: %v", ents)
	}
	// Another cluster's store.
	if err := os.WriteFile(filepath.Join(root, StoreIDFile), []byte("someoneelse\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = m.blobs.Put(ctx, bytes.NewReader([]byte("other")), 0)
	if !errors.Is(err, ErrStoreMarker) || !strings.Contains(err.Error(), "belongs to another gear cluster") {
		t.Fatalf("Put with another marker: %v, want the other-cluster refusal", err)
	}
}

// A new group (e.g. restored from a snapshot) on a root that already
// holds a marker adopts its id instead of writing a new one.
func TestFileStoreMarkerAdopted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, StoreIDFile), []byte("0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(ctx, Options{IP: "127.0.0.1", DataDir: t.TempDir(), FailoverTimeout: 2 * time.Second, JarRoot: "file://" + root,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	go func() { _ = m.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for m.storeID() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not set the store id")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := m.storeID(); got != "0123456789abcdef" {
		t.Errorf("store id = %q, want the marker's", got)
	}
}
