package jarstore

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
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// tempPrefix starts the name of every in-flight Put's temporary file.
// A Put that was interrupted by a crash leaves its temporary file behind;
// Blobs.GC removes those older than its grace (SweepTemps), never one of a
// Put in progress in this process.
const tempPrefix = ".tmp-"

// dirStore keeps objects as files in one directory. It backs both the
// master-local fallback ("" root path) and file:// roots on shared mounts.
// Durability: every Put fsyncs the file and then the directory, so a
// completed Put survives a crash of the master that wrote it.
type dirStore struct {
	dir      string
	local    bool
	closed   atomic.Bool
	inflight inflight
}

func openFileURL(_ context.Context, u *url.URL, raw string, log *slog.Logger) (Store, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("jarstore: root path %q: file:// URIs name a path on this machine, not host %q: write file:///%s%s", raw, u.Host, u.Host, u.Path)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("jarstore: root path %q: want an absolute path, e.g. file:///mnt/nfs/gear/jars", raw)
	}
	s, err := openDir(filepath.Clean(u.Path), false, false)
	if err != nil {
		return nil, err
	}
	log.Info("jar store opened", "backend", "file", "dir", s.(*dirStore).dir)
	return s, nil
}

// openDir opens dir as a store. create: make the directory if missing
// (only for the local fallback: a missing shared directory usually means the
// NFS mount is absent, and creating it on the local disk would hide that).
func openDir(dir string, local, create bool) (Store, error) {
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("jarstore: create local jar store directory %s: %w", dir, err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("jarstore: jar store directory %s does not exist: create it on the shared mount (is the NFS volume mounted?): %w", dir, err)
		}
		return nil, fmt.Errorf("jarstore: jar store directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("jarstore: jar store path %s is not a directory", dir)
	}
	return &dirStore{dir: dir, local: local}, nil
}

// SweepTemps implements TempSweeper.
func (s *dirStore) SweepTemps(ctx context.Context, before time.Time) ([]Info, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("jarstore: list %s: %w", s.dir, err)
	}
	var removed []Info
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		name := e.Name()
		if !strings.HasPrefix(name, tempPrefix) || s.inflight.has(name) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("jarstore: remove temporary file %s in %s: %w", name, s.dir, err))
			continue
		}
		removed = append(removed, Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return removed, errors.Join(errs...)
}

func (s *dirStore) check(names ...string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return err
		}
	}
	return nil
}

func (s *dirStore) path(name string) string { return filepath.Join(s.dir, name) }

// noSpace turns ENOSPC/EDQUOT into ErrNoSpace with a message naming where.
func (s *dirStore) noSpace(op, name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: disk full (or quota exceeded) %s %q in %s: free space there or point gear.jarstore.rootpath elsewhere (%v)", ErrNoSpace, op, name, s.dir, err)
	}
	return fmt.Errorf("jarstore: %s %q in %s: %w", op, name, s.dir, err)
}

func (s *dirStore) Put(ctx context.Context, name string, r io.Reader) (n int64, err error) {
	if err := s.check(name); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Registered before it exists, so SweepTemps never sees it unregistered.
	base := tempPrefix + randomSuffix()
	done := s.inflight.add(base)
	defer done()
	tmp := filepath.Join(s.dir, base)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, s.noSpace("create temporary file for", name, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	w := &errWriter{w: f}
	if wt, ok := r.(io.WriterTo); ok {
		// A HashReader (Blobs.Put) writes straight from its read-ahead
		// buffers: no copy through another buffer.
		n, err = wt.WriteTo(&ctxWriter{ctx, w})
	} else {
		n, err = io.CopyBuffer(w, &ctxReader{ctx, r}, make([]byte, copyBufSize))
	}
	if err != nil {
		if w.err != nil {
			return n, s.noSpace("write", name, w.err)
		}
		return n, fmt.Errorf("jarstore: put %q: reading the upload: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return n, s.noSpace("sync", name, err)
	}
	if err := f.Close(); err != nil {
		return n, s.noSpace("close", name, err)
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return n, s.noSpace("chmod", name, err)
	}
	if err := os.Rename(tmp, s.path(name)); err != nil {
		return n, s.noSpace("rename into place", name, err)
	}
	syncDir(s.dir)
	return n, nil
}

// errWriter remembers the writer's own error so Put can tell a failing disk
// from a failing upload.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// ctxWriter stops a stream with ctx's error once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

func (s *dirStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := s.check(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(name))
	if err != nil {
		return nil, s.notFound("get", name, err)
	}
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %q in %s is not a regular file", ErrNotFound, name, s.dir)
	}
	return withContext(ctx, f), nil
}

func (s *dirStore) notFound(op, name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q in %s", ErrNotFound, name, s.dir)
	}
	return fmt.Errorf("jarstore: %s %q in %s: %w", op, name, s.dir, err)
}

func (s *dirStore) Stat(ctx context.Context, name string) (Info, error) {
	if err := s.check(name); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return Info{}, s.notFound("stat", name, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("%w: %q in %s is not a regular file", ErrNotFound, name, s.dir)
	}
	return Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *dirStore) List(ctx context.Context) ([]Info, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("jarstore: list %s: %w", s.dir, err)
	}
	out := make([]Info, 0, len(ents))
	for _, e := range ents {
		if !e.Type().IsRegular() || ValidName(e.Name()) != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		out = append(out, Info{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *dirStore) Rename(ctx context.Context, from, to string) error {
	if err := s.check(from, to); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(s.path(from), s.path(to)); err != nil {
		return s.notFound("rename", from, err)
	}
	syncDir(s.dir)
	return nil
}

func (s *dirStore) Delete(ctx context.Context, name string) error {
	if err := s.check(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(s.path(name)); err != nil {
		return s.notFound("delete", name, err)
	}
	return nil
}

func (s *dirStore) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *dirStore) String() string {
	if s.local {
		return "local:" + s.dir
	}
	return "file://" + s.dir
}
