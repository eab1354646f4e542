package jarstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Direct reports whether the store keeps blobs as files on this machine
// (the local fallback and file:// roots, also behind a Wrapper): PutSized
// then moves an upload from a socket into the file in the kernel.
func (b *Blobs) Direct(ctx context.Context) bool {
	_, ok := b.dirStore(ctx)
	return ok
}

// Wrapper is a Store that puts checks in front of another one (the
// master's file:// store-id marker). Blobs reaches through it to a
// directory store for the zero-copy paths (PutSized, CopyTo,
// OpenUnverified); Inner runs the wrapper's checks and fails as its other
// methods would.
type Wrapper interface {
	Inner(ctx context.Context) (Store, error)
}

// dirStore returns the directory store under b, through Wrappers.
func (b *Blobs) dirStore(ctx context.Context) (*dirStore, bool) {
	s := b.store
	for range 4 {
		switch v := s.(type) {
		case *dirStore:
			return v, true
		case Wrapper:
			inner, err := v.Inner(ctx)
			if err != nil {
				return nil, false
			}
			s = inner
		default:
			return nil, false
		}
	}
	return nil, false
}

// PutSized stores an upload of exactly size bytes: head (bytes already
// read off the connection, e.g. an HTTP server's read-ahead) and then the
// rest from src. want, if not "", is the digest the uploader declared:
// a mismatch fails with ErrDigestMismatch. An upload that ends early fails
// with ErrShortUpload; src is never read past size. On any failure
// (short, mismatch, ErrNoSpace, ctx) nothing is left behind.
//
// For a directory store the bytes go from src into the temporary file by
// (*os.File).ReadFrom, which is a splice(2) when src is a *net.TCPConn (or
// a copy_file_range from a file): the kernel moves them into the page
// cache without a copy through user space. Another goroutine hashes the
// file behind the writes through read-only mappings (as CopyTo does), so
// nothing is hashed twice and what is hashed is what is stored. The file
// is fsynced and renamed to its digest's name. Other stores stream
// through Put.
func (b *Blobs) PutSized(ctx context.Context, head []byte, src io.Reader, size int64, want string) (digest string, n int64, err error) {
	return b.PutSizedFollow(ctx, head, src, size, want, nil)
}

// PutSizedFollow is PutSized with follow, if not nil, run alongside the
// receive on a reader of the upload's bytes as they are written (it reads
// the temporary file behind the writes, and ends with the upload's error
// if the upload fails), for work that would otherwise have to wait for
// the stored blob (the master's check of a bundle). It returns once follow
// has returned. follow runs only for a directory store (Direct).
func (b *Blobs) PutSizedFollow(ctx context.Context, head []byte, src io.Reader, size int64, want string, follow func(io.Reader)) (digest string, n int64, err error) {
	if size < int64(len(head)) {
		head = head[:size]
	}
	if want != "" {
		if _, err := ParseDigest(want); err != nil {
			return "", 0, err
		}
	}
	ds, ok := b.dirStore(ctx)
	if !ok {
		r := &sizedReader{r: io.MultiReader(bytes.NewReader(head), io.LimitReader(src, size-int64(len(head)))), size: size}
		if want != "" {
			n, err := b.PutExpect(ctx, r, want, size)
			return want, n, err
		}
		return b.Put(ctx, r, size)
	}
	if err := ds.check(); err != nil {
		return "", 0, err
	}
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	base := tempPrefix + randomSuffix()
	done := ds.inflight.add(base) // before it exists: SweepTemps never takes it
	defer done()
	tmp := ds.path(base)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, ds.noSpace("create temporary file for", "an upload", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	start := time.Now()
	n, digest, ph, err := receiveHashed(ctx, f, head, src, size, follow)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return "", n, ds.noSpace("write", "an upload", err)
		}
		if errors.Is(err, errSync) {
			return "", n, ds.noSpace("sync", "an upload", err)
		}
		return "", n, fmt.Errorf("jarstore: upload into %s: %w", ds, err)
	}
	if want != "" && digest != want {
		return "", n, fmt.Errorf("%w: the upload of %d bytes hashes to %s, not the declared %s", ErrDigestMismatch, n, digest, want)
	}
	synced := time.Now()
	if err := f.Close(); err != nil {
		return "", n, ds.noSpace("close", "an upload", err)
	}
	if err := ctx.Err(); err != nil {
		return "", n, err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return "", n, ds.noSpace("chmod", "an upload", err)
	}
	name, _ := ObjectName(digest)
	b.mu.Lock()
	replaced, err := renameOver(tmp, ds.path(name))
	b.mu.Unlock()
	if err != nil {
		return "", n, ds.noSpace("rename into place", name, err)
	}
	syncDir(ds.dir)
	if replaced {
		// tmp now holds the blob's former copy (the same bytes, if it
		// was sound). Freeing a large file's blocks takes the file
		// system a while (0.3 s per GiB on ext4): not on the upload's
		// time. A crash before it leaves a temporary file, which
		// SweepTemps removes.
		go func() { _ = os.Remove(tmp) }()
	}
	// The phases of a spliced upload (docs/BENCHMARKS.md, Jar store):
	// receiving (first to last byte written); after the last byte, the
	// hash's tail and the fsync, which run side by side; then the rename
	// with the directory syncs.
	b.log.Debug("blob stored", "digest", digest, "size", n, "spliced", true,
		"receive", ph.last.Sub(start).Round(time.Millisecond), "hash_tail", ph.hashed.Sub(ph.last).Round(time.Millisecond),
		"fsync", ph.synced.Sub(ph.last).Round(time.Millisecond), "rename", time.Since(synced).Round(time.Millisecond))
	return digest, n, nil
}

// renameOver renames tmp to dst. When dst exists (the same blob uploaded
// again) it swaps the two atomically (renameat2 RENAME_EXCHANGE) and
// reports replaced: tmp then names dst's former file, for the caller to
// remove, since unlinking a large file inside the rename would hold up the
// upload. Where the file system cannot swap, it is a plain rename.
func renameOver(tmp, dst string) (replaced bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
	if err == nil {
		return true, nil
	}
	return false, os.Rename(tmp, dst)
}

// receiveHashed writes head and then size-len(head) bytes of src into f
// (by f.ReadFrom: a splice from a socket), copyChunk at a time, while
// another goroutine hashes f behind the writes through mappings. Once the
// last byte is written it fsyncs f while the hash catches up: the disk's
// writeback and the hash's last MiBs overlap instead of following each
// other. It returns the bytes written, the digest of what f holds and
// when each phase ended; a failed fsync is wrapped in errSync. follow, if
// not nil, reads f behind the writes (PutSizedFollow).
func receiveHashed(ctx context.Context, f *os.File, head []byte, src io.Reader, size int64, follow func(io.Reader)) (int64, string, receivePhases, error) {
	var ph receivePhases
	fr := &followReader{f: f}
	fr.cond = sync.NewCond(&fr.mu)
	followed := make(chan struct{})
	if follow != nil {
		go func() {
			defer close(followed)
			follow(fr)
		}()
	} else {
		close(followed)
	}
	h := sha256.New()
	progress := make(chan int64, 4)
	hashed := make(chan error, 1)
	go func() {
		err := hashMapped(h, f, progress)
		ph.hashed = time.Now()
		hashed <- err
	}()
	flush := startWriteback(f)
	var off int64
	var werr error
	if len(head) > 0 {
		k, err := f.Write(head)
		off += int64(k)
		werr = err
		if k > 0 {
			progress <- off
			fr.written(off)
		}
	}
	for werr == nil && off < size {
		if werr = ctx.Err(); werr != nil {
			break
		}
		want := min(copyChunk, size-off)
		k, err := f.ReadFrom(io.LimitReader(src, want))
		off += k
		if k > 0 {
			progress <- off
			flush.written(off)
			fr.written(off)
		}
		if err != nil {
			werr = err
			break
		}
		if k < want {
			werr = fmt.Errorf("%w: the connection ended after %d of %d bytes", ErrShortUpload, off, size)
		}
	}
	close(progress)
	fr.end(werr)
	flush.stop()
	ph.last = time.Now()
	if werr == nil {
		if err := f.Sync(); err != nil {
			werr = fmt.Errorf("%w: %w", errSync, err)
		}
		ph.synced = time.Now()
	}
	herr := <-hashed
	<-followed
	if werr != nil {
		return off, "", ph, werr
	}
	if herr != nil {
		return off, "", ph, herr
	}
	return off, digestPrefix + hex.EncodeToString(h.Sum(nil)), ph, nil
}

// writeback starts the disk writes of an upload's file while it is being
// received (sync_file_range(SYNC_FILE_RANGE_WRITE) of what was written
// since the last call, from its own goroutine, since the call can block
// while the disk's queue is full), so that the fsync after the last byte
// waits only for the tail instead of writing the whole file then. It only
// starts writes: the fsync is what makes the file durable.
type writeback struct {
	f     *os.File
	ahead chan int64 // offsets written; the latest one counts
	done  chan struct{}
}

// writebackMin is the least that one writeback call starts.
const writebackMin = copyChunk

func startWriteback(f *os.File) *writeback {
	w := &writeback{f: f, ahead: make(chan int64, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var from int64
		for end := range w.ahead {
			if end-from < writebackMin {
				continue
			}
			// Advisory: a file system without it (tmpfs, some NFS)
			// answers with an error or does nothing; the fsync still
			// writes everything.
			_ = unix.SyncFileRange(int(w.f.Fd()), from, end-from, unix.SYNC_FILE_RANGE_WRITE)
			from = end
		}
	}()
	return w
}

// written tells the writeback goroutine that f holds off bytes; it never
// blocks the receiver (a busy goroutine gets the latest offset later).
func (w *writeback) written(off int64) {
	select {
	case w.ahead <- off:
	default:
		select { // replace a stale offset with this one
		case <-w.ahead:
		default:
		}
		select {
		case w.ahead <- off:
		default:
		}
	}
}

// stop waits for the writeback goroutine to finish its last call.
func (w *writeback) stop() {
	close(w.ahead)
	<-w.done
}

// followReader reads an upload's file behind the writes (PutSizedFollow).
type followReader struct {
	f    *os.File
	mu   sync.Mutex
	cond *sync.Cond
	have int64 // bytes written so far
	done bool  // no more writes
	err  error // why the writes ended early
	off  int64 // read so far
}

func (r *followReader) written(n int64) {
	r.mu.Lock()
	r.have = n
	r.mu.Unlock()
	r.cond.Broadcast()
}

func (r *followReader) end(err error) {
	r.mu.Lock()
	r.done, r.err = true, err
	r.mu.Unlock()
	r.cond.Broadcast()
}

func (r *followReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	for r.off >= r.have && !r.done {
		r.cond.Wait()
	}
	have, err := r.have, r.err
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if r.off >= have {
		return 0, io.EOF
	}
	k, err := r.f.ReadAt(p[:min(int64(len(p)), have-r.off)], r.off)
	r.off += int64(k)
	if err == io.EOF && k > 0 {
		err = nil
	}
	return k, err
}

// receivePhases are the ends of receiveHashed's phases.
type receivePhases struct {
	last   time.Time // the last byte written
	hashed time.Time // the hash caught up
	synced time.Time // the fsync returned
}

// errSync marks a failed fsync of an upload.
var errSync = errors.New("fsync")

// sizedReader fails with ErrShortUpload when r ends before size bytes.
type sizedReader struct {
	r    io.Reader
	size int64
	n    int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	k, err := s.r.Read(p)
	s.n += int64(k)
	if err == io.EOF && s.n < s.size {
		err = fmt.Errorf("%w: the connection ended after %d of %d bytes", ErrShortUpload, s.n, s.size)
	}
	return k, err
}
