package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
)

// cache keeps bundles by digest in the data dir, verified on download.
// With a shared jar store this worker can open itself (gear.jarstore.rootpath,
// e.g. the NFS mount), bundles are read straight from it; otherwise, or
// when that fails, from whichever master answers.
type cache struct {
	dir    string
	client *cluster.Client
	shared *jarstore.Blobs // nil: masters only
	log    *slog.Logger
	mu     sync.Mutex
	locks  map[string]*sync.Mutex
}

func newCache(dir string, client *cluster.Client, shared *jarstore.Blobs, log *slog.Logger) (*cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create bundle cache %s: %w", dir, err)
	}
	return &cache{dir: dir, client: client, shared: shared, log: log, locks: map[string]*sync.Mutex{}}, nil
}

func (c *cache) lock(digest string) func() {
	c.mu.Lock()
	l, ok := c.locks[digest]
	if !ok {
		l = &sync.Mutex{}
		c.locks[digest] = l
	}
	c.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func hexOf(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("bundle digest %q is not sha256:<64 hex>", digest)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("bundle digest %q is not sha256:<64 hex>", digest)
	}
	return h, nil
}

// file returns the path of the cached bundle, downloading and verifying it
// first if needed.
func (c *cache) file(ctx context.Context, b cluster.Bundle) (string, error) {
	h, err := hexOf(b.Digest)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, h+".bundle")
	unlock := c.lock(b.Digest)
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if c.shared != nil {
		err := c.fromShared(ctx, b.Digest, path)
		if err == nil {
			return path, nil
		}
		if errors.Is(err, jarstore.ErrCorrupt) {
			return "", fmt.Errorf("bundle %s in the shared jar store is corrupt; not running it: %w", b.Digest, err)
		}
		c.log.Warn("reading the bundle from the shared jar store failed; fetching it through a master", "digest", b.Digest, "err", err)
	}
	return path, c.fromMaster(ctx, b.Digest, h, path)
}

// fromShared copies a bundle from the shared store, which verifies it.
func (c *cache) fromShared(ctx context.Context, digest, path string) error {
	rc, _, err := c.shared.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = c.save(rc, path)
	return err
}

// fromMaster downloads a bundle through the masters and verifies it.
func (c *cache) fromMaster(ctx context.Context, digest, h, path string) error {
	rc, err := c.client.OpenBundle(ctx, digest)
	if err != nil {
		return fmt.Errorf("fetch bundle %s: %w", digest, err)
	}
	// Hashing overlaps receiving and writing (bounded buffers).
	hr := jarstore.NewHashReader(rc, -1, "")
	// Close the body first: that ends a read-ahead blocked on a stalled
	// master, so hr.Close never waits for it.
	defer func() { _ = rc.Close(); _ = hr.Close() }()
	var got string
	n, err := c.save(hr, path, func() error {
		if got = hr.Digest(); got != "sha256:"+strings.ToLower(h) {
			return fmt.Errorf("bundle %s arrived corrupt (bytes hash to %s); not running it", digest, got)
		}
		return nil
	})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// A master cuts the download when the stored copy fails its
		// checksum (or when it dies mid-transfer).
		return fmt.Errorf("fetch bundle %s: download cut after %d bytes: the stored bundle may be corrupt (see the master's log) or the master went away; not running it: %w", digest, n, err)
	}
	if err != nil {
		return fmt.Errorf("fetch bundle %s: %w", digest, err)
	}
	return nil
}

// save writes r to a temporary file in the cache and renames it to path
// once every check passes; nothing partial is ever visible.
func (c *cache) save(r io.Reader, path string, checks ...func() error) (int64, error) {
	tmp, err := os.CreateTemp(c.dir, ".fetch-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return n, err
		}
	}
	return n, os.Rename(tmp.Name(), path)
}

// unpacked returns the directory holding the unpacked archive bundle.
func (c *cache) unpacked(ctx context.Context, b cluster.Bundle, file string) (string, error) {
	h, _ := hexOf(b.Digest)
	dir := filepath.Join(c.dir, h+".d")
	unlock := c.lock(b.Digest + "/unpack")
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	kind := bundle.KindTarGz
	if b.Kind == cluster.KindZip {
		kind = bundle.KindZip
	}
	if err := bundle.Unpack(ctx, f, kind, dir, bundle.Limits{}); err != nil {
		return "", fmt.Errorf("unpack bundle %s: %w", b.Digest, err)
	}
	return dir, nil
}
