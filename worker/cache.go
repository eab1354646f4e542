package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/periodic"
)

// cache keeps bundles by digest in the data dir, verified on download:
// <hex>.bundle is the downloaded bundle, <hex>.d the unpacked archive.
// With a shared jar store this worker can open itself (gear.jarstore.rootpath,
// e.g. the NFS mount), bundles are read straight from it; otherwise, or
// when that fails, from whichever master answers.
//
// Eviction (evict, decided by planEviction): what an executor on this
// worker is assigned is never removed; an unpacked directory nobody uses is
// removed after the grace period; the unused entries that stay never take
// more than the cap, least recently used go first.
type cache struct {
	dir    string
	client *cluster.Client
	shared *jarstore.Blobs // nil: masters only
	log    *slog.Logger
	opts   cacheOptions
	mu     sync.Mutex
	locks  map[string]*sync.Mutex
	// entries by digest: sizes on disk and when last used (guarded by mu).
	entries map[string]*cacheState
}

// cacheOptions configure a cache; zero values are the defaults.
type cacheOptions struct {
	Limits bundle.Limits // unpack limits (gear.bundle.*)
	// Size caps the unused entries (gear.worker.cache-size); 0 keeps none.
	Size int64
	// Grace keeps an unused unpacked directory this long (gear.worker.cache-grace).
	Grace time.Duration
	Now   func() time.Time // nil = time.Now
}

// cacheState is what the cache knows of one digest.
type cacheState struct {
	fileSize, dirSize int64
	hasFile, hasDir   bool
	lastUsed          time.Time
}

// Names in the cache dir other than entries: the temporaries of a fetch,
// an unpack, a zip spool, and an eviction in progress. A worker that died
// leaves them behind; newCache removes them.
const (
	fetchPrefix = ".fetch-"
	evictPrefix = ".evict-"
)

func newCache(dir string, client *cluster.Client, shared *jarstore.Blobs, log *slog.Logger, opts cacheOptions) (*cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create bundle cache %s: %w", dir, err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &cache{dir: dir, client: client, shared: shared, log: log, opts: opts,
		locks: map[string]*sync.Mutex{}, entries: map[string]*cacheState{}}
	if err := c.scan(); err != nil {
		return nil, err
	}
	return c, nil
}

// scan removes the leftovers of a previous run and learns what is cached.
func (c *cache) scan() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("read bundle cache %s: %w", c.dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(c.dir, name)
		if strings.HasPrefix(name, ".") {
			// .fetch-*, .evict-*, .<hex>.d.unpack-*, .bundle-spool-*:
			// nothing else is running in this data dir (it is locked).
			if err := removeTree(p); err != nil {
				c.log.Warn("cannot remove a leftover in the bundle cache", "path", p, "err", err)
			} else {
				c.log.Info("removed a leftover of an interrupted download or unpack", "path", p)
			}
			continue
		}
		h, isDir := strings.CutSuffix(name, ".d")
		if !isDir {
			h, _ = strings.CutSuffix(name, ".bundle")
		}
		digest := "sha256:" + h
		if _, err := jarstore.ParseDigest(digest); err != nil || h == name {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		st := c.state(digest)
		if isDir && fi.IsDir() {
			st.hasDir, st.dirSize = true, dirSize(p)
		} else if !isDir && fi.Mode().IsRegular() {
			st.hasFile, st.fileSize = true, fi.Size()
		}
		if fi.ModTime().After(st.lastUsed) {
			st.lastUsed = fi.ModTime()
		}
	}
	return nil
}

// state returns the entry of digest, creating it. Called with mu held or
// before the cache is shared.
func (c *cache) state(digest string) *cacheState {
	st, ok := c.entries[digest]
	if !ok {
		st = &cacheState{}
		c.entries[digest] = st
	}
	return st
}

// used records that digest was just used and what is on disk for it.
func (c *cache) used(digest string, update func(*cacheState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(digest)
	st.lastUsed = c.opts.Now()
	if update != nil {
		update(st)
	}
}

// dirSize is the bytes of regular files under dir (links not followed).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
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

// file returns the path of the cached bundle, downloading and verifying it
// first if needed.
func (c *cache) file(ctx context.Context, b cluster.Bundle) (string, error) {
	h, err := jarstore.ParseDigest(b.Digest)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, h+".bundle")
	unlock := c.lock(b.Digest)
	defer unlock()
	if fi, err := os.Stat(path); err == nil {
		c.used(b.Digest, func(st *cacheState) { st.hasFile, st.fileSize = true, fi.Size() })
		return path, nil
	}
	defer func() {
		if fi, err := os.Stat(path); err == nil {
			c.used(b.Digest, func(st *cacheState) { st.hasFile, st.fileSize = true, fi.Size() })
		}
	}()
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

// fromShared copies a bundle from the shared store: an in-kernel copy
// verified as it lands (Blobs.CopyTo), so nothing is hashed twice and
// the master is not in the way.
func (c *cache) fromShared(ctx context.Context, digest, path string) error {
	tmp, err := os.CreateTemp(c.dir, fetchPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = c.shared.CopyTo(ctx, digest, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
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
	tmp, err := os.CreateTemp(c.dir, fetchPrefix+"*")
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
	// Read-only, and readable by executors running as gear.worker.user
	// (GEAR_BUNDLE: a jar runs as java -cp $GEAR_BUNDLE).
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), path)
}

// unpacked returns the directory holding the unpacked archive bundle.
func (c *cache) unpacked(ctx context.Context, b cluster.Bundle, file string) (string, error) {
	h, _ := jarstore.ParseDigest(b.Digest)
	dir := filepath.Join(c.dir, h+".d")
	unlock := c.lock(b.Digest + "/unpack")
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		c.used(b.Digest, nil)
		return dir, nil
	}
	var kind bundle.Kind
	switch b.Kind {
	case cluster.KindTarGz:
		kind = bundle.KindTarGz
	case cluster.KindZip:
		kind = bundle.KindZip
	default:
		// Never guess: running an unknown kind as a tar.gz runs something
		// its submitter did not mean.
		if err := b.Kind.Check(); err != nil {
			return "", fmt.Errorf("bundle %s: %w", b.Digest, err)
		}
		return "", fmt.Errorf("bundle %s: a %s bundle is not unpacked", b.Digest, b.Kind)
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := bundle.Unpack(ctx, f, kind, dir, c.opts.Limits); err != nil {
		return "", fmt.Errorf("unpack bundle %s: %w", b.Digest, err)
	}
	// Shared by every executor of the bundle here, each of which runs in
	// its own copy (sandbox.go): nobody writes into it.
	if err := readOnlyTree(dir); err != nil {
		return "", fmt.Errorf("make the unpacked bundle %s read-only: %w", b.Digest, err)
	}
	size := dirSize(dir)
	c.used(b.Digest, func(st *cacheState) { st.hasDir, st.dirSize = true, size })
	return dir, nil
}

// cacheEntry is one digest in the cache as the eviction decision sees it.
type cacheEntry struct {
	Digest   string
	FileSize int64 // the downloaded bundle (counts only if HasFile)
	DirSize  int64 // the unpacked directory (counts only if HasDir)
	HasFile  bool
	HasDir   bool
	LastUsed time.Time
	InUse    bool // an executor on this worker is assigned this bundle
}

// eviction says what to remove of one digest.
type eviction struct {
	Digest string
	Dir    bool // the unpacked directory
	File   bool // the downloaded bundle
}

// planEviction decides what the cache removes; it is a pure function of
// its inputs. Entries in use are never touched. An unused unpacked
// directory goes once it has been unused for grace. Then, while the unused
// entries left take more than capBytes, the least recently used go whole
// (ties broken by digest, so the plan is deterministic).
func planEviction(entries []cacheEntry, now time.Time, grace time.Duration, capBytes int64) []eviction {
	var unused []cacheEntry
	plan := map[string]*eviction{}
	var total int64
	for _, e := range entries {
		if e.InUse || !e.HasDir && !e.HasFile {
			continue
		}
		if e.HasDir && now.Sub(e.LastUsed) >= grace {
			plan[e.Digest] = &eviction{Digest: e.Digest, Dir: true}
			e.HasDir = false
		}
		if e.HasDir {
			total += e.DirSize
		}
		if e.HasFile {
			total += e.FileSize
		}
		if e.HasDir || e.HasFile {
			unused = append(unused, e)
		}
	}
	sort.Slice(unused, func(i, j int) bool {
		a, b := unused[i], unused[j]
		if !a.LastUsed.Equal(b.LastUsed) {
			return a.LastUsed.Before(b.LastUsed)
		}
		return a.Digest < b.Digest
	})
	for _, e := range unused {
		if total <= capBytes {
			break
		}
		ev := plan[e.Digest]
		if ev == nil {
			ev = &eviction{Digest: e.Digest}
			plan[e.Digest] = ev
		}
		if e.HasDir {
			ev.Dir = true
			total -= e.DirSize
		}
		if e.HasFile {
			ev.File = true
			total -= e.FileSize
		}
	}
	out := make([]eviction, 0, len(plan))
	for _, ev := range plan {
		out = append(out, *ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// evict removes what planEviction says. inUse reports the digests the
// executors on this worker are assigned; ok=false means it cannot tell
// (processes of unknown bundles are still running), and nothing is
// removed. Each removal holds the digest's locks and asks inUse again
// under them, so a bundle assigned meanwhile is either kept or fetched
// again by the new executor after the removal.
func (c *cache) evict(inUse func() (map[string]bool, bool)) {
	used, ok := inUse()
	if !ok {
		return
	}
	now := c.opts.Now()
	c.mu.Lock()
	entries := make([]cacheEntry, 0, len(c.entries))
	for d, st := range c.entries {
		if used[d] {
			st.lastUsed = now
		}
		entries = append(entries, cacheEntry{Digest: d, FileSize: st.fileSize, DirSize: st.dirSize,
			HasFile: st.hasFile, HasDir: st.hasDir, LastUsed: st.lastUsed, InUse: used[d]})
	}
	c.mu.Unlock()
	for _, ev := range planEviction(entries, now, c.opts.Grace, c.opts.Size) {
		c.remove(ev, inUse)
	}
}

func (c *cache) remove(ev eviction, inUse func() (map[string]bool, bool)) {
	h, err := jarstore.ParseDigest(ev.Digest)
	if err != nil {
		return
	}
	unlockFile := c.lock(ev.Digest)
	defer unlockFile()
	unlockDir := c.lock(ev.Digest + "/unpack")
	defer unlockDir()
	if used, ok := inUse(); !ok || used[ev.Digest] {
		return
	}
	if ev.Dir {
		dir := filepath.Join(c.dir, h+".d")
		// Rename first: a directory half removed is never taken for a
		// complete unpack, even if this worker dies meanwhile.
		tmp := filepath.Join(c.dir, evictPrefix+h+"-"+strconv.FormatInt(c.opts.Now().UnixNano(), 36))
		if err := os.Rename(dir, tmp); err == nil {
			err = removeTree(tmp)
			if err != nil {
				c.log.Warn("cannot remove an evicted unpacked bundle", "path", tmp, "err", err)
			}
			c.log.Info("bundle cache: removed an unpacked bundle no executor here uses", "digest", ev.Digest)
		} else if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cannot evict an unpacked bundle", "path", dir, "err", err)
			return
		}
	}
	if ev.File {
		p := filepath.Join(c.dir, h+".bundle")
		if err := os.Remove(p); err == nil {
			c.log.Info("bundle cache: removed a downloaded bundle no executor here uses (over gear.worker.cache-size)", "digest", ev.Digest)
		} else if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cannot evict a downloaded bundle", "path", p, "err", err)
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.entries[ev.Digest]; st != nil {
		if ev.Dir {
			st.hasDir, st.dirSize = false, 0
		}
		if ev.File {
			st.hasFile, st.fileSize = false, 0
		}
		if !st.hasDir && !st.hasFile {
			delete(c.entries, ev.Digest)
		}
	}
}

// bundlesInUse lists the bundles of every executor this worker has
// (running, starting, stopping or failed), for the cache's eviction. It
// cannot tell while processes found at start or being stopped outside
// execs (orphans, fenced) are still around: their bundles are unknown.
func (w *Worker) bundlesInUse() (map[string]bool, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.adopted) > 0 || len(w.orphanStops) > 0 {
		return nil, false
	}
	used := make(map[string]bool, len(w.execs))
	for _, e := range w.execs {
		e.mu.Lock()
		used[e.a.Bundle.Digest] = true
		e.mu.Unlock()
	}
	return used, true
}

// cacheLoop evicts from the bundle cache every second: an unpacked bundle
// is gone about cache-grace after its last executor here.
func (w *Worker) cacheLoop(ctx context.Context) {
	periodic.Every(ctx, time.Second, func(time.Time) { w.cache.evict(w.bundlesInUse) })
}
