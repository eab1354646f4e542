package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"

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
	c, err := newCache(t.TempDir(), cluster.NewClient([]string{"127.0.0.1:1"}, ""), blobs, slog.New(slog.DiscardHandler))
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
