package master

// The store-id marker of file:// jar stores.
//
// A file:// root is a directory on a shared mount (NFS). When the mount is
// absent, the mount point is an ordinary local directory: writing bundles
// there would hide them on one master's disk. So the first use of a
// file:// root by a cluster writes a marker file with a random id into the
// root, and the id is kept in the replicated state; from then on every
// master checks, before it touches the store, that the root's marker holds
// that id, and refuses the store (with the reason) when it is missing or
// different.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/datadir"
)

// StoreIDFile is the marker's name in a file:// root. It starts with a dot,
// so the store never lists it as an object.
const StoreIDFile = ".gear-store-id"

// ErrStoreMarker: a file:// jar store's marker is missing or names another
// cluster; the store is refused until it is fixed.
var ErrStoreMarker = errors.New("jar store refused")

// fileRootDir returns the directory of a file:// root path, "" for any
// other root.
func fileRootDir(root string) string {
	u, err := url.Parse(root)
	if err != nil || !strings.EqualFold(u.Scheme, "file") || u.Path == "" {
		return ""
	}
	return filepath.Clean(u.Path)
}

// readStoreID reads the marker in dir: "" with a nil error when it (or
// dir) is missing.
func readStoreID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, StoreIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the jar store's marker %s: %w", filepath.Join(dir, StoreIDFile), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeStoreID creates dir (when create) and writes the marker with id,
// unless a marker exists already: it returns the id the marker holds
// afterwards (the existing one if another master won the race).
func writeStoreID(dir, id string, create bool) (string, error) {
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create the jar store root %s: %w", dir, err)
		}
	}
	tmp, err := os.CreateTemp(dir, ".tmp-storeid-")
	if err != nil {
		return "", fmt.Errorf("write the jar store's marker in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.WriteString(tmp, id+"\n"); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("write the jar store's marker in %s: %w", dir, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("write the jar store's marker in %s: %w", dir, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// link fails when the marker exists: the first writer wins.
	if err := os.Link(tmp.Name(), filepath.Join(dir, StoreIDFile)); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("write the jar store's marker in %s: %w", dir, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return readStoreID(dir)
}

// markedStore is a file:// jar store that is used only while its root's
// marker holds the id of the replicated state. It opens the root lazily,
// so that a master starts (and can be fixed) while the mount is absent.
type markedStore struct {
	root   string // gear.jarstore.rootpath
	dir    string
	expect func() string // the replicated store id; "" = not set yet
	// init sets the store id now (the leader's initStoreID), so that the
	// first upload does not race storeIDLoop; it fails on followers.
	init func() error
	log  *slog.Logger

	mu       sync.Mutex
	inner    jarstore.Store
	verified time.Time // the marker matched at this time
	closed   bool
}

// verifyFor is how long a matching marker is trusted before it is read
// again.
const verifyFor = time.Second

func (s *markedStore) store(ctx context.Context) (jarstore.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, jarstore.ErrClosed
	}
	want := s.expect()
	if want == "" && s.init != nil {
		s.mu.Unlock()
		err := s.init()
		s.mu.Lock()
		if s.closed {
			return nil, jarstore.ErrClosed
		}
		if err == nil {
			want = s.expect()
		}
	}
	if want == "" {
		return nil, fmt.Errorf("%w: the jar store %s is not initialised yet (the leader writes its store-id marker on first use); retry in a moment", ErrStoreMarker, s.root)
	}
	if time.Since(s.verified) > verifyFor {
		got, err := readStoreID(s.dir)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStoreMarker, err)
		}
		switch {
		case got == "":
			return nil, fmt.Errorf("%w: the jar store root %s has no %s marker (this cluster's store id is %s): the shared mount looks absent; mount it (is the NFS volume mounted?) — nothing is written onto the local disk under the mount point",
				ErrStoreMarker, s.dir, StoreIDFile, want)
		case got != want:
			return nil, fmt.Errorf("%w: the jar store root %s belongs to another gear cluster (its marker holds store id %s, this cluster's is %s): check gear.jarstore.rootpath and what is mounted there",
				ErrStoreMarker, s.dir, got, want)
		}
		s.verified = time.Now()
	}
	if s.inner == nil {
		st, err := jarstore.Open(ctx, s.root, "", s.log)
		if err != nil {
			return nil, err
		}
		s.inner = st
	}
	return s.inner, nil
}

// Inner implements jarstore.Wrapper: the directory store once the marker
// matches, for the zero-copy paths (spliced uploads, sendfile downloads).
func (s *markedStore) Inner(ctx context.Context) (jarstore.Store, error) { return s.store(ctx) }

func (s *markedStore) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	st, err := s.store(ctx)
	if err != nil {
		return 0, err
	}
	return st.Put(ctx, name, r)
}

func (s *markedStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, name)
}

func (s *markedStore) Stat(ctx context.Context, name string) (jarstore.Info, error) {
	st, err := s.store(ctx)
	if err != nil {
		return jarstore.Info{}, err
	}
	return st.Stat(ctx, name)
}

func (s *markedStore) List(ctx context.Context) ([]jarstore.Info, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.List(ctx)
}

func (s *markedStore) Rename(ctx context.Context, from, to string) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	return st.Rename(ctx, from, to)
}

func (s *markedStore) Delete(ctx context.Context, name string) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	return st.Delete(ctx, name)
}

// SweepTemps passes through to the directory store (jarstore.TempSweeper).
func (s *markedStore) SweepTemps(ctx context.Context, before time.Time) ([]jarstore.Info, error) {
	st, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	if ts, ok := st.(jarstore.TempSweeper); ok {
		return ts.SweepTemps(ctx, before)
	}
	return nil, nil
}

func (s *markedStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.inner != nil {
		return s.inner.Close()
	}
	return nil
}

// storeID returns the replicated store id.
func (m *Master) storeID() string {
	var id string
	m.fsm.read(func(s *State) { id = s.StoreID })
	return id
}

// storeIDLoop runs on every master; while it leads and the replicated state
// has no store id, it sets one (see initStoreID). It ends once the id is
// set.
func (m *Master) storeIDLoop(ctx context.Context) {
	dir := fileRootDir(m.opts.JarRoot)
	if dir == "" {
		return
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var logged string
	for {
		if m.storeID() != "" {
			return
		}
		if m.isLeader() {
			if err := m.initStoreID(dir); err != nil && err.Error() != logged {
				logged = err.Error()
				m.log.Error("cannot initialise the file:// jar store; uploads are refused until this is fixed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// initStoreID gives the cluster its store id: the one a marker in the root
// holds already, else a new one written into the root. A missing root is
// created only by an empty cluster (no applications): for a cluster that
// has some, a missing root means the mount is absent.
func (m *Master) initStoreID(dir string) error {
	id, err := readStoreID(dir)
	if err != nil {
		return err
	}
	if id == "" {
		empty := true
		m.fsm.read(func(s *State) { empty = len(s.Apps) == 0 })
		_, statErr := os.Stat(dir)
		if statErr != nil && !empty {
			return fmt.Errorf("the jar store root %s does not exist (%v) but the cluster has applications: the shared mount looks absent; mount it (is the NFS volume mounted?)", dir, statErr)
		}
		if id, err = writeStoreID(dir, datadir.RandomID(), empty); err != nil {
			return err
		}
		m.log.Info("wrote the jar store's store-id marker", "dir", dir, "store_id", id)
	}
	if _, err := m.apply(command{Op: opStoreID, StoreID: id}); err != nil {
		return fmt.Errorf("record the jar store's id %s: %w", id, err)
	}
	return nil
}
