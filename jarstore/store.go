package jarstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Backends and Blobs wrap them with %w and a message that
// names the object and what to do; compare with errors.Is.
var (
	// ErrNotFound: the named object (or blob digest) is not in the store.
	ErrNotFound = errors.New("jarstore: not found")
	// ErrCorrupt: the bytes read back do not hash to the digest they are
	// stored under. The blob must be uploaded again.
	ErrCorrupt = errors.New("jarstore: stored content is corrupt (checksum mismatch)")
	// ErrNoSpace: the backing storage is full (ENOSPC, an HDFS quota, ...).
	// Nothing partial was left behind.
	ErrNoSpace = errors.New("jarstore: no space left in the jar store")
	// ErrTooLarge: an upload exceeded the size limit given to Blobs.Put.
	ErrTooLarge = errors.New("jarstore: upload exceeds the size limit")
	// ErrDigestMismatch: an upload did not hash to the digest its uploader
	// declared (Blobs.PutExpect). The upload was damaged in transit.
	ErrDigestMismatch = errors.New("jarstore: upload does not match its declared digest")
	// ErrShortUpload: an upload of a declared size ended before it
	// (Blobs.PutSized): the uploader closed the connection early.
	ErrShortUpload = errors.New("jarstore: upload cut short")
	// ErrInvalidName: an object name is not a valid store name (see ValidName).
	ErrInvalidName = errors.New("jarstore: invalid object name")
	// ErrInvalidDigest: a digest is not of the form "sha256:<64 lowercase hex>".
	ErrInvalidDigest = errors.New("jarstore: invalid digest")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("jarstore: store is closed")
)

// Info describes one stored object.
type Info struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Store is a flat namespace of immutable-once-written objects.
//
// Names are validated with ValidName: 1-255 characters from [A-Za-z0-9._-],
// not starting with '.' (backends use dot names for their temporary files,
// which List never returns).
//
// All methods are safe for concurrent use.
type Store interface {
	// Put stores the content of r under name, replacing any existing object
	// atomically. It returns the number of bytes stored. If r fails, ctx is
	// cancelled, or the backend fails, Put returns an error and nothing new is
	// visible under name (an older object with that name stays intact).
	Put(ctx context.Context, name string, r io.Reader) (int64, error)
	// Get opens the named object for reading. ErrNotFound if it is missing.
	// The reader stops with ctx's error once ctx is done.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// Stat describes the named object. ErrNotFound if it is missing.
	Stat(ctx context.Context, name string) (Info, error)
	// List returns every object, sorted by name. Temporary objects of
	// in-flight Puts are not listed.
	List(ctx context.Context) ([]Info, error)
	// Rename moves an object to a new name atomically, replacing the target
	// if it exists. ErrNotFound if from is missing.
	Rename(ctx context.Context, from, to string) error
	// Delete removes the named object. ErrNotFound if it is missing.
	Delete(ctx context.Context, name string) error
	// Close releases the backend's resources (connections). Further calls
	// fail with ErrClosed.
	Close() error
}

// ValidName reports whether name is usable as an object name: 1-255
// characters from [A-Za-z0-9._-], not starting with '.'. The alphabet is the
// intersection of what every backend stores unchanged (HDFS rejects ':', NFS
// and local disks reject '/' inside a name).
func ValidName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("%w: %q must be 1-255 characters", ErrInvalidName, name)
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: %q must not start with '.' (reserved for temporary files)", ErrInvalidName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: %q has %q at byte %d (allowed: A-Z a-z 0-9 . _ -)", ErrInvalidName, name, c, i)
		}
	}
	return nil
}

// TempSweeper is implemented by the backends whose Put writes a temporary
// object first (file://, the local directory, hdfs://). A Put interrupted
// by a crash (or a master killed mid-upload) leaves that object behind;
// Blobs.GC calls SweepTemps to remove them.
type TempSweeper interface {
	// SweepTemps removes the temporary objects last modified before
	// before, except those of Puts in progress through this Store (a live
	// upload is never cut, whatever before is). It returns what it removed.
	SweepTemps(ctx context.Context, before time.Time) ([]Info, error)
}

// inflight tracks the temporary objects of Puts in progress.
type inflight struct{ m sync.Map }

// add registers name and returns the func that unregisters it.
func (f *inflight) add(name string) func() {
	f.m.Store(name, struct{}{})
	return func() { f.m.Delete(name) }
}

func (f *inflight) has(name string) bool {
	_, ok := f.m.Load(name)
	return ok
}

// opener opens one backend from its parsed root URI.
type opener func(ctx context.Context, u *url.URL, raw string, log *slog.Logger) (Store, error)

// backends maps a URI scheme to its backend. Static on purpose: the set of
// backends is part of the product, not a plugin point.
var backends = map[string]opener{
	"file": openFileURL,
	"hdfs": openHDFS,
	"mem":  openMem,
}

// Schemes lists the root path schemes Open understands (for help texts).
func Schemes() []string { return []string{"file", "hdfs", "mem"} }

// Open opens the jar store at rootPath (gear.jarstore.rootpath):
//
//	""                          local directory localDir (NOT highly available:
//	                            IsLocal reports true and the caller must warn)
//	"file:///nfs/gear/jars"     a directory on a shared mount; it must exist
//	"hdfs://host:port/path/"    HDFS with one namenode
//	"hdfs://nameservice/path/"  HDFS HA: namenodes resolved from
//	                            $HADOOP_CONF_DIR/{core,hdfs}-site.xml
//	"mem://"                    in memory, a new empty store each call (tests)
//
// log may be nil (logs are dropped).
func Open(ctx context.Context, rootPath, localDir string, log *slog.Logger) (Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if strings.TrimSpace(rootPath) == "" {
		if localDir == "" {
			return nil, errors.New("jarstore: no root path and no local directory: set gear.jarstore.rootpath or the master's data dir")
		}
		return openDir(localDir, true, true)
	}
	if strings.HasPrefix(rootPath, "/") {
		// Gearpump's "/jarstore/": a directory on this machine, created
		// when missing, lost with it (IsLocal reports true).
		return openDir(filepath.Clean(rootPath), true, true)
	}
	u, err := url.Parse(rootPath)
	if err != nil {
		return nil, fmt.Errorf("jarstore: root path %q is not a URI (%v): use file:///dir, hdfs://host:port/dir or hdfs://nameservice/dir", rootPath, err)
	}
	op, ok := backends[strings.ToLower(u.Scheme)]
	if !ok {
		if u.Scheme == "" {
			return nil, fmt.Errorf("jarstore: root path %q is a relative path: give an absolute directory, file:///dir for a shared directory, or hdfs://host:port/dir", rootPath)
		}
		return nil, fmt.Errorf("jarstore: root path %q: unknown scheme %q (supported: %s)", rootPath, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return op(ctx, u, rootPath, log)
}

// IsLocal reports whether s is the master-local fallback store opened from an
// empty root path: bundles in it are lost when that master's disk is.
func IsLocal(s Store) bool {
	d, ok := s.(*dirStore)
	return ok && d.local
}

// ctxReader stops a stream with ctx's error once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ctxReadCloser is ctxReader with the underlying Close.
type ctxReadCloser struct {
	ctxReader
	c io.Closer
}

func (c *ctxReadCloser) Close() error { return c.c.Close() }

func withContext(ctx context.Context, rc io.ReadCloser) io.ReadCloser {
	return &ctxReadCloser{ctxReader{ctx, rc}, rc}
}

// copyBufSize is the streaming buffer: the only per-Put memory.
const copyBufSize = 256 << 10
