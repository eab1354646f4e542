package jarstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// copyChunk is how much the kernel copies per copy_file_range call in
// CopyTo; the hasher follows one chunk behind.
const copyChunk = 8 << 20

// CopyTo copies the blob with digest into dst, an empty file open for
// reading and writing, and verifies the copy: it returns ErrCorrupt if
// the bytes now in dst do not hash to digest (the caller then discards
// dst). It returns the number of bytes copied.
//
// For a directory store (the local fallback and file:// roots) the kernel
// copies (copy_file_range: no copy through user space, and a reflink on a
// filesystem that has them) while another goroutine hashes dst behind
// the copy through a read-only mapping of it. Copying and hashing overlap,
// nothing is hashed twice, and what is verified is the copy itself, not
// the source. Other stores stream through Open, which verifies as it
// reads.
func (b *Blobs) CopyTo(ctx context.Context, digest string, dst *os.File) (int64, error) {
	name, err := ObjectName(digest)
	if err != nil {
		return 0, err
	}
	ds, ok := b.dirStore(ctx)
	if !ok {
		rc, _, err := b.Open(ctx, digest)
		if err != nil {
			return 0, err
		}
		defer rc.Close()
		return io.Copy(dst, rc)
	}
	if err := ds.check(name); err != nil {
		return 0, err
	}
	src, err := os.Open(ds.path(name))
	if err != nil {
		return 0, fmt.Errorf("jarstore: blob %s: %w", digest, ds.notFound("get", name, err))
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return 0, fmt.Errorf("jarstore: blob %s: %w", digest, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%w: %q in %s is not a regular file", ErrNotFound, name, ds.dir)
	}
	n, got, err := copyHashed(ctx, src, dst, fi.Size())
	if err != nil {
		return n, fmt.Errorf("jarstore: copy blob %s from %s: %w", digest, ds, err)
	}
	if got != digest {
		return n, fmt.Errorf("%w: blob %s in %s: copied %d bytes hashing to %s: delete it and upload the bundle again", ErrCorrupt, digest, ds, n, got)
	}
	return n, nil
}

// copyHashed copies size bytes of src into dst with copy_file_range and
// hashes dst behind the copy, through a mapping of it. It returns the
// digest of what dst holds.
func copyHashed(ctx context.Context, src, dst *os.File, size int64) (int64, string, error) {
	h := sha256.New()
	if size == 0 {
		n, err := io.Copy(dst, src) // also notices a file grown since Stat
		if n > 0 || err != nil {
			return n, "", errors.Join(err, errors.New("the blob changed size while being copied"))
		}
		return 0, digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
	}
	progress := make(chan int64, 4)
	hashed := make(chan error, 1)
	go func() { hashed <- hashMapped(h, dst, progress) }()
	var off int64
	var cerr error
	for off < size {
		if cerr = ctx.Err(); cerr != nil {
			break
		}
		want := int(min(copyChunk, size-off))
		k, err := unix.CopyFileRange(int(src.Fd()), nil, int(dst.Fd()), nil, want, 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				// No in-kernel copy between these files: copy through
				// user space, still hashed behind.
				k, err = copyPlain(src, dst, want)
			}
			if err != nil {
				cerr = err
				break
			}
		}
		if k == 0 {
			cerr = fmt.Errorf("the blob is %d bytes, not %d: it shrank while being copied", off, size)
			break
		}
		off += int64(k)
		progress <- off
	}
	close(progress)
	herr := <-hashed
	if cerr != nil {
		return off, "", cerr
	}
	if herr != nil {
		return off, "", herr
	}
	// One byte more means the source grew: not the blob that was stat'd.
	var one [1]byte
	if k, _ := src.Read(one[:]); k > 0 {
		return off, "", fmt.Errorf("the blob grew past %d bytes while being copied", size)
	}
	return off, digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

// hashMapped hashes f up to each offset received on progress, through
// read-only mappings of at most copyChunk bytes at a time (unmapped once
// hashed, so the copy never counts in the process's RSS as a whole).
func hashMapped(h io.Writer, f *os.File, progress <-chan int64) (err error) {
	// A page of the mapping that is gone (the file truncated under us)
	// faults: report it instead of crashing.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("hashing the copy: %v", r)
		}
		if err != nil {
			for range progress { // let the copier finish
			}
		}
	}()
	page := int64(os.Getpagesize())
	var done int64
	for end := range progress {
		for done < end {
			base := done / page * page
			stop := min(end, base+copyChunk)
			if err := hashRange(h, f, base, done, stop); err != nil {
				return err
			}
			done = stop
		}
	}
	return nil
}

// hashRange hashes f[from:stop) through a mapping of f[base:stop), base
// being from rounded down to a page.
func hashRange(h io.Writer, f *os.File, base, from, stop int64) error {
	m, err := unix.Mmap(int(f.Fd()), base, int(stop-base), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the copy for hashing: %w", err)
	}
	defer func() { _ = unix.Munmap(m) }()
	_, _ = h.Write(m[from-base:])
	return nil
}

// copyPlain copies up to n bytes from src to dst through a buffer.
func copyPlain(src, dst *os.File, n int) (int, error) {
	buf := make([]byte, min(n, pipeBufSize))
	total := 0
	for total < n {
		k, err := src.Read(buf[:min(len(buf), n-total)])
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return total, werr
			}
			total += k
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// OpenUnverified returns a reader of the blob's bytes as stored, without
// checking them, and its size: for a reader that verifies the digest
// itself (a worker's download hashes what it receives). From a directory
// store it is the *os.File itself, so that io.Copy to a socket is a
// sendfile and the master neither copies nor hashes. Everything else
// should use Open, which verifies.
func (b *Blobs) OpenUnverified(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	name, err := ObjectName(digest)
	if err != nil {
		return nil, 0, err
	}
	ds, ok := b.dirStore(ctx)
	if !ok {
		return b.Open(ctx, digest)
	}
	if err := ds.check(name); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(ds.path(name))
	if err != nil {
		return nil, 0, fmt.Errorf("jarstore: blob %s: %w", digest, ds.notFound("get", name, err))
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%w: blob %s: %q in %s is not a regular file", ErrNotFound, digest, name, ds.dir)
	}
	return f, fi.Size(), nil
}

// FilePath returns the path of the blob's file when the store keeps blobs
// as files on this machine (a directory store, also behind a Wrapper),
// for a reader that needs a file and must not copy or hash a large blob
// again (the master's inspection on submit). The file is the stored bytes
// as they are, unverified, and it may be deleted by GC at any time after
// its grace period; ok is false for other stores or a missing blob.
func (b *Blobs) FilePath(ctx context.Context, digest string) (path string, ok bool) {
	name, err := ObjectName(digest)
	if err != nil {
		return "", false
	}
	ds, ok := b.dirStore(ctx)
	if !ok {
		return "", false
	}
	p := ds.path(name)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return p, true
}
