package jarstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

const (
	digestPrefix = "sha256:"
	// blobPrefix starts the object name of every blob: "sha256-<hex>"
	// (':' is not allowed in HDFS names).
	blobPrefix = "sha256-"
	// uploadPrefix starts the object name of an upload whose digest is not
	// known yet; GC removes those older than its grace period.
	uploadPrefix = "upload-"
)

// Blobs stores content-addressed blobs in a Store.
//
// A blob's digest is "sha256:<64 lowercase hex>"; it is kept as the object
// "sha256-<hex>". The same content is stored once. Reads are verified.
type Blobs struct {
	store Store
	log   *slog.Logger
	// mu orders GC's check-then-delete against Put's final rename, so a blob
	// re-uploaded while GC runs is never deleted (within this process; run
	// GC on one master only, e.g. the raft leader).
	mu sync.Mutex
}

// NewBlobs wraps store. log may be nil.
func NewBlobs(store Store, log *slog.Logger) *Blobs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Blobs{store: store, log: log}
}

// Store returns the underlying store.
func (b *Blobs) Store() Store { return b.store }

// ParseDigest checks that d is "sha256:<64 lowercase hex>" and returns the
// hex part.
func ParseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, digestPrefix)
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("%w: %q (want sha256:<64 lowercase hex digits>)", ErrInvalidDigest, d)
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%w: %q (want sha256:<64 lowercase hex digits>)", ErrInvalidDigest, d)
		}
	}
	return h, nil
}

// ObjectName is the Store object name that holds the blob with digest d.
func ObjectName(d string) (string, error) {
	h, err := ParseDigest(d)
	if err != nil {
		return "", err
	}
	return blobPrefix + h, nil
}

// DigestOf returns the digest of an object name, or "" if name is not a blob.
func DigestOf(name string) string {
	h, ok := strings.CutPrefix(name, blobPrefix)
	if !ok {
		return ""
	}
	d := digestPrefix + h
	if _, err := ParseDigest(d); err != nil {
		return ""
	}
	return d
}

// Put streams r into the store and returns its digest and size. Memory use
// is bounded (pipeBufs buffers of pipeBufSize) whatever the size; reading
// r, hashing and writing overlap (see HashReader). maxSize <= 0 means no
// limit; past the limit Put fails with ErrTooLarge. On any failure (limit,
// reader error, ErrNoSpace, ctx) nothing is left behind.
func (b *Blobs) Put(ctx context.Context, r io.Reader, maxSize int64) (digest string, size int64, err error) {
	p := NewHashReader(r, limitOf(maxSize), "")
	defer p.Close()
	tmp := uploadPrefix + randomSuffix()
	n, err := b.store.Put(ctx, tmp, p)
	if err != nil {
		return "", n, fmt.Errorf("jarstore: store blob: %w", err)
	}
	digest = p.Digest()
	name, _ := ObjectName(digest)
	b.mu.Lock()
	err = b.store.Rename(ctx, tmp, name)
	b.mu.Unlock()
	if err != nil {
		_ = b.store.Delete(context.WithoutCancel(ctx), tmp)
		return "", n, fmt.Errorf("jarstore: store blob %s: %w", digest, err)
	}
	b.log.Debug("blob stored", "digest", digest, "size", n)
	return digest, n, nil
}

func limitOf(maxSize int64) int64 {
	if maxSize <= 0 {
		return -1
	}
	return maxSize
}

// PutExpect is Put for an uploader that declared the digest up front: the
// stream is verified while it is written, and a mismatch fails with
// ErrDigestMismatch leaving nothing behind. It always stores the stream
// (also when the blob exists: that refreshes its age for GC).
func (b *Blobs) PutExpect(ctx context.Context, r io.Reader, digest string, maxSize int64) (int64, error) {
	name, err := ObjectName(digest)
	if err != nil {
		return 0, err
	}
	p := NewHashReader(r, limitOf(maxSize), digest)
	defer p.Close()
	// Write under a temporary name so that a mismatching upload can never
	// replace a good blob, even for a moment.
	tmp := uploadPrefix + randomSuffix()
	n, err := b.store.Put(ctx, tmp, p)
	if err != nil {
		return n, fmt.Errorf("jarstore: store blob %s: %w", digest, err)
	}
	b.mu.Lock()
	err = b.store.Rename(ctx, tmp, name)
	b.mu.Unlock()
	if err != nil {
		_ = b.store.Delete(context.WithoutCancel(ctx), tmp)
		return n, fmt.Errorf("jarstore: store blob %s: %w", digest, err)
	}
	return n, nil
}

// Stat returns the stored size and age of a blob. ErrNotFound if missing.
func (b *Blobs) Stat(ctx context.Context, digest string) (Info, error) {
	name, err := ObjectName(digest)
	if err != nil {
		return Info{}, err
	}
	return b.store.Stat(ctx, name)
}

// Open returns a reader of the blob and its size. The reader hashes what it
// returns (in a goroutine, overlapped with the caller's writes; see
// HashReader); at the end of the stream it returns ErrCorrupt instead of
// io.EOF if the content does not match the digest, so a caller that reads
// to EOF never accepts corrupt bytes silently. The last byte is returned
// only once the whole blob is verified, so a corrupt blob never reaches
// its stated size: an HTTP download of it is always cut short. Callers
// that forward bytes (HTTP downloads) must treat the error as fatal for the
// transfer. The reader implements io.WriterTo, and it must be closed.
func (b *Blobs) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	name, err := ObjectName(digest)
	if err != nil {
		return nil, 0, err
	}
	info, err := b.store.Stat(ctx, name)
	if err != nil {
		return nil, 0, fmt.Errorf("jarstore: blob %s: %w", digest, err)
	}
	rc, err := b.store.Get(ctx, name)
	if err != nil {
		return nil, 0, fmt.Errorf("jarstore: blob %s: %w", digest, err)
	}
	where := fmt.Sprint(b.store)
	hr := newHashReader(rc, -1, digest, openBufSize, info.Size, func(got string, n int64) error {
		return fmt.Errorf("%w: blob %s in %s: read %d bytes (expected %d) hashing to %s: delete it and upload the bundle again", ErrCorrupt, digest, where, n, info.Size, got)
	})
	return &verifiedBlob{hr, rc}, info.Size, nil
}

// openBufSize is a download's chunk: Open's memory is pipeBufs of them
// (1 MiB), smaller than an upload's because many workers may download at
// once.
const openBufSize = 256 << 10

// verifiedBlob is what Open returns: the hashing reader, and the object
// to close once its goroutines stopped.
type verifiedBlob struct {
	*HashReader
	c io.Closer
}

func (v *verifiedBlob) Close() error {
	_ = v.HashReader.Close()
	return v.c.Close()
}

// Verify reads the whole blob and reports ErrCorrupt if it does not match
// its digest (a scrub of one blob).
func (b *Blobs) Verify(ctx context.Context, digest string) error {
	rc, _, err := b.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.CopyBuffer(io.Discard, rc, make([]byte, copyBufSize))
	return err
}

// List returns the digests of all stored blobs with their sizes and ages.
func (b *Blobs) List(ctx context.Context) ([]Info, error) {
	all, err := b.store.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, in := range all {
		if d := DigestOf(in.Name); d != "" {
			in.Name = d
			out = append(out, in)
		}
	}
	return out, nil
}

// GC deletes every blob whose digest is not in referenced and that is older
// than grace at now (the grace period protects a blob uploaded just before
// the application that references it is recorded). Leftover uploads older
// than grace are removed too, and so are the temporary files of Puts
// interrupted by a crash (TempSweeper), except those of uploads in progress
// through this store, even with a grace of 0. It reports what it deleted.
// It keeps going past individual failures and returns them joined.
func (b *Blobs) GC(ctx context.Context, referenced map[string]bool, grace time.Duration, now time.Time) (GCReport, error) {
	deleted, err := b.gcBlobs(ctx, referenced, grace, now)
	r := GCReport{Deleted: deleted}
	if ts, ok := b.store.(TempSweeper); ok && ctx.Err() == nil {
		removed, terr := ts.SweepTemps(ctx, now.Add(-grace))
		for _, in := range removed {
			b.log.Info("jar store gc: deleted the temporary file of an interrupted upload", "name", in.Name, "size", in.Size, "age", now.Sub(in.ModTime).Round(time.Second))
		}
		r.Temps = removed
		if terr != nil {
			err = errors.Join(err, fmt.Errorf("jarstore: gc: temporary files: %w", terr))
		}
	}
	return r, err
}

// GCReport is what Blobs.GC deleted.
type GCReport struct {
	Deleted []string // unreferenced blobs, by digest, sorted
	Temps   []Info   // temporary files of uploads interrupted by a crash
}

func (b *Blobs) gcBlobs(ctx context.Context, referenced map[string]bool, grace time.Duration, now time.Time) ([]string, error) {
	all, err := b.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("jarstore: gc: %w", err)
	}
	cutoff := now.Add(-grace)
	var deleted []string
	var errs []error
	for _, in := range all {
		if err := ctx.Err(); err != nil {
			return deleted, errors.Join(append(errs, err)...)
		}
		d := DigestOf(in.Name)
		isUpload := strings.HasPrefix(in.Name, uploadPrefix)
		if (d == "" && !isUpload) || (d != "" && referenced[d]) || in.ModTime.After(cutoff) {
			continue
		}
		b.mu.Lock()
		// Re-check under the lock: a Put may have refreshed the blob.
		cur, err := b.store.Stat(ctx, in.Name)
		if err == nil && !cur.ModTime.After(cutoff) {
			err = b.store.Delete(ctx, in.Name)
		} else if err == nil {
			err = errSkip
		}
		b.mu.Unlock()
		switch {
		case err == nil:
			if d != "" {
				deleted = append(deleted, d)
				b.log.Info("jar store gc: deleted unreferenced blob", "digest", d, "size", in.Size, "age", now.Sub(in.ModTime).Round(time.Second))
			} else {
				b.log.Info("jar store gc: deleted abandoned upload", "name", in.Name, "size", in.Size)
			}
		case errors.Is(err, errSkip), errors.Is(err, ErrNotFound):
		default:
			errs = append(errs, fmt.Errorf("jarstore: gc: delete %s: %w", in.Name, err))
		}
	}
	return deleted, errors.Join(errs...)
}

var errSkip = errors.New("skip")
