package jarstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// backends returns a fresh store of each kind Blobs must work on.
func backends(t *testing.T) map[string]jarstore.Store {
	t.Helper()
	out := map[string]jarstore.Store{
		"mem":   openT(t, "mem://", ""),
		"local": openT(t, "", t.TempDir()),
		"file":  openT(t, "file://"+t.TempDir(), ""),
	}
	for _, s := range out {
		t.Cleanup(func() { s.Close() })
	}
	return out
}

func readAll(t *testing.T, b *jarstore.Blobs, d string) ([]byte, error) {
	t.Helper()
	rc, size, err := b.Open(context.Background(), d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err == nil && int64(len(data)) != size {
		t.Errorf("Open(%s) size %d, read %d", d, size, len(data))
	}
	return data, err
}

func objectNames(t *testing.T, s jarstore.Store) []string {
	t.Helper()
	infos, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		out = append(out, in.Name)
	}
	return out
}

func TestBlobsPutOpenDedup(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := jarstore.NewBlobs(s, nil)
			ctx := context.Background()
			for _, size := range []int{0, 1, 100 << 10, 3<<20 + 5} {
				data := randBytes(uint64(size), size)
				d, n, err := b.Put(ctx, bytes.NewReader(data), 0)
				if err != nil {
					t.Fatalf("Put(%d bytes): %v", size, err)
				}
				if d != digestOf(data) || n != int64(size) {
					t.Fatalf("Put = %s, %d; want %s, %d", d, n, digestOf(data), size)
				}
				got, err := readAll(t, b, d)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Open(%s): %d bytes, %v", d, len(got), err)
				}
			}
			// Same content twice is stored once.
			data := randBytes(99, 5000)
			d1, _, err := b.Put(ctx, bytes.NewReader(data), 0)
			if err != nil {
				t.Fatal(err)
			}
			before := objectNames(t, s)
			d2, _, err := b.Put(ctx, bytes.NewReader(data), 0)
			if err != nil || d1 != d2 {
				t.Fatalf("second Put = %s, %v; want %s", d2, err, d1)
			}
			if after := objectNames(t, s); !slices.Equal(before, after) {
				t.Fatalf("objects after duplicate Put = %v, before %v", after, before)
			}
			infos, err := b.List(ctx)
			if err != nil || len(infos) != 5 {
				t.Fatalf("Blobs.List = %v, %v; want 5 blobs", infos, err)
			}
		})
	}
}

func TestBlobsConcurrentSameContent(t *testing.T) {
	s := openT(t, "file://"+t.TempDir(), "")
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	data := randBytes(5, 700<<10)
	var wg sync.WaitGroup
	digests := make([]string, 6)
	errs := make([]error, 6)
	for i := range digests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			digests[i], _, errs[i] = b.Put(context.Background(), bytes.NewReader(data), 0)
		}()
	}
	wg.Wait()
	for i := range digests {
		if errs[i] != nil || digests[i] != digestOf(data) {
			t.Fatalf("Put %d = %s, %v", i, digests[i], errs[i])
		}
	}
	if got := objectNames(t, s); len(got) != 1 {
		t.Fatalf("objects = %v, want exactly one blob", got)
	}
}

func TestBlobsSizeLimit(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := jarstore.NewBlobs(s, nil)
			data := randBytes(1, 10_001)
			_, _, err := b.Put(context.Background(), bytes.NewReader(data), 10_000)
			if !errors.Is(err, jarstore.ErrTooLarge) || !strings.Contains(err.Error(), "more than 10000 bytes") {
				t.Fatalf("Put over limit = %v, want ErrTooLarge naming the limit", err)
			}
			_, err = b.PutExpect(context.Background(), bytes.NewReader(data), digestOf(data), 10_000)
			if !errors.Is(err, jarstore.ErrTooLarge) {
				t.Fatalf("PutExpect over limit = %v, want ErrTooLarge", err)
			}
			if got := objectNames(t, s); len(got) != 0 {
				t.Fatalf("objects after over-limit Puts = %v, want none", got)
			}
			// Exactly at the limit is fine.
			if _, _, err := b.Put(context.Background(), bytes.NewReader(data[:10_000]), 10_000); err != nil {
				t.Fatalf("Put at the limit: %v", err)
			}
		})
	}
}

func TestBlobsPutExpect(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := jarstore.NewBlobs(s, nil)
			ctx := context.Background()
			good := randBytes(2, 40_000)
			d := digestOf(good)
			n, err := b.PutExpect(ctx, bytes.NewReader(good), d, 0)
			if err != nil || n != int64(len(good)) {
				t.Fatalf("PutExpect(good) = %d, %v", n, err)
			}
			bad := slices.Clone(good)
			bad[123] ^= 1
			_, err = b.PutExpect(ctx, bytes.NewReader(bad), d, 0)
			if !errors.Is(err, jarstore.ErrDigestMismatch) {
				t.Fatalf("PutExpect(damaged) = %v, want ErrDigestMismatch", err)
			}
			got, err := readAll(t, b, d)
			if err != nil || !bytes.Equal(got, good) {
				t.Fatalf("after a damaged re-upload the good blob reads %d bytes, %v", len(got), err)
			}
			other := digestOf([]byte("other"))
			if _, err := b.PutExpect(ctx, bytes.NewReader(good), other, 0); !errors.Is(err, jarstore.ErrDigestMismatch) {
				t.Fatalf("PutExpect(wrong digest) = %v", err)
			}
			if _, err := b.Stat(ctx, other); !errors.Is(err, jarstore.ErrNotFound) {
				t.Fatalf("Stat(mismatched digest) = %v, want ErrNotFound", err)
			}
			if got := objectNames(t, s); len(got) != 1 {
				t.Fatalf("objects = %v, want only the good blob", got)
			}
		})
	}
}

func TestBlobsInvalidDigest(t *testing.T) {
	b := jarstore.NewBlobs(jarstore.NewMem(nil), nil)
	for _, d := range []string{"", "sha256:", "md5:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("a", 63), "sha256:../../../etc/passwd"} {
		if _, _, err := b.Open(context.Background(), d); !errors.Is(err, jarstore.ErrInvalidDigest) {
			t.Errorf("Open(%q) = %v, want ErrInvalidDigest", d, err)
		}
		if _, err := b.PutExpect(context.Background(), strings.NewReader("x"), d, 0); !errors.Is(err, jarstore.ErrInvalidDigest) {
			t.Errorf("PutExpect(%q) = %v, want ErrInvalidDigest", d, err)
		}
	}
	if _, _, err := b.Open(context.Background(), digestOf([]byte("nope"))); !errors.Is(err, jarstore.ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
}

func TestBlobsCorruptOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, "file://"+dir, "")
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	data := randBytes(3, 200_000)
	d, _, err := b.Put(context.Background(), bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := jarstore.ObjectName(d)
	path := filepath.Join(dir, name)
	cases := []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"bit-flip", func(b []byte) []byte { b = slices.Clone(b); b[100_000] ^= 0x40; return b }},
		{"truncated", func(b []byte) []byte { return b[:150_000] }},
		{"extended", func(b []byte) []byte { return append(slices.Clone(b), 0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.corrupt(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readAll(t, b, d)
			if !errors.Is(err, jarstore.ErrCorrupt) {
				t.Fatalf("reading a %s blob = %v, want ErrCorrupt", c.name, err)
			}
			if !strings.Contains(err.Error(), d) {
				t.Errorf("error %q does not name the digest", err)
			}
			if err := b.Verify(context.Background(), d); !errors.Is(err, jarstore.ErrCorrupt) {
				t.Fatalf("Verify = %v, want ErrCorrupt", err)
			}
		})
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(context.Background(), d); err != nil {
		t.Fatalf("Verify after repair = %v", err)
	}
}

// fakeClock is a manually advanced clock for ModTimes in the mem store.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestBlobsGC(t *testing.T) {
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := jarstore.NewMem(clock.Now)
	b := jarstore.NewBlobs(s, nil)
	ctx := context.Background()
	put := func(content string) string {
		t.Helper()
		d, _, err := b.Put(ctx, strings.NewReader(content), 0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	kept, old, young := put("kept"), put("old"), put("young-later")
	// A crashed upload and a foreign object.
	if _, err := s.Put(ctx, "upload-deadbeef", strings.NewReader("partial")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "README", strings.NewReader("not a blob")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	young = put("young-later") // re-upload refreshes its age
	grace := time.Hour

	r, err := b.GC(ctx, map[string]bool{kept: true}, grace, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	deleted := r.Deleted
	if !slices.Equal(deleted, []string{old}) {
		t.Fatalf("GC deleted %v, want only the unreferenced old blob %s", deleted, old)
	}
	if got := objectNames(t, s); !slices.Contains(got, "README") || slices.Contains(got, "upload-deadbeef") || len(got) != 3 {
		t.Fatalf("objects after GC = %v, want kept, young, README (abandoned upload removed)", got)
	}
	for _, d := range []string{kept, young} {
		if _, err := b.Stat(ctx, d); err != nil {
			t.Errorf("blob %s gone after GC: %v", d, err)
		}
	}
	clock.Advance(2 * time.Hour)
	r, err = b.GC(ctx, map[string]bool{kept: true}, grace, clock.Now())
	if deleted = r.Deleted; err != nil || !slices.Equal(deleted, []string{young}) {
		t.Fatalf("second GC = %v, %v; want [%s]", deleted, err, young)
	}
}

// noSpaceDir mounts a tiny tmpfs so that writes really fail with ENOSPC.
func noSpaceDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=512k"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a small tmpfs for the disk-full test (needs root): %v", err)
		}
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestNoSpace(t *testing.T) {
	dir := noSpaceDir(t)
	s := openT(t, "file://"+dir, "")
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	data := randBytes(4, 2<<20)
	_, _, err := b.Put(context.Background(), bytes.NewReader(data), 0)
	if !errors.Is(err, jarstore.ErrNoSpace) {
		t.Fatalf("Blobs.Put on a full disk = %v, want ErrNoSpace", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "disk full") || !strings.Contains(msg, dir) {
		t.Errorf("error %q should say disk full and name %s", msg, dir)
	}
	_, err = s.Put(context.Background(), "plain", bytes.NewReader(data))
	if !errors.Is(err, jarstore.ErrNoSpace) {
		t.Fatalf("Store.Put on a full disk = %v, want ErrNoSpace", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("disk-full Puts left %d files behind (first %q), want none", len(ents), ents[0].Name())
	}
	// The space is usable again afterwards.
	small := randBytes(5, 10_000)
	if _, _, err := b.Put(context.Background(), bytes.NewReader(small), 0); err != nil {
		t.Fatalf("small Put after disk-full failure: %v", err)
	}
}

// synthReader produces size pseudo-random bytes without holding them, and
// samples the heap every sampleEvery bytes.
type synthReader struct {
	left, sampleEvery, sinceSample int64
	block                          []byte
	off                            int
	maxHeap                        uint64
}

func newSynth(size int64) *synthReader {
	return &synthReader{left: size, sampleEvery: 8 << 20, block: randBytes(77, 1<<16+13)}
}

func (s *synthReader) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.maxHeap = max(s.maxHeap, ms.HeapInuse)
}

func (s *synthReader) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], s.block[s.off:])
		n += c
		s.off = (s.off + c) % len(s.block)
	}
	s.left -= int64(n)
	s.sinceSample += int64(n)
	if s.sinceSample >= s.sampleEvery {
		s.sinceSample = 0
		s.sample()
	}
	return n, nil
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestBlobsBoundedMemory streams 256 MiB through Put and Open and checks the
// heap never grows by more than a small constant: the store must stream,
// not buffer.
func TestBlobsBoundedMemory(t *testing.T) {
	const size = 256 << 20
	const allowed = 32 << 20
	s := openT(t, "file://"+t.TempDir(), "")
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	base := heapInuse()

	src := newSynth(size)
	d, n, err := b.Put(context.Background(), src, 0)
	if err != nil || n != size {
		t.Fatalf("Put(256 MiB) = %d, %v", n, err)
	}
	if grow := int64(src.maxHeap) - int64(base); grow > allowed {
		t.Fatalf("heap grew by %d MiB during a 256 MiB Put (limit %d MiB)", grow>>20, allowed>>20)
	}

	rc, sz, err := b.Open(context.Background(), d)
	if err != nil || sz != size {
		t.Fatalf("Open = %d, %v", sz, err)
	}
	defer rc.Close()
	want := newSynth(size)
	var maxHeap uint64
	buf, wbuf := make([]byte, 1<<20), make([]byte, 1<<20)
	var read, sinceSample int64
	for {
		k, err := rc.Read(buf)
		if k > 0 {
			if _, werr := io.ReadFull(want, wbuf[:k]); werr != nil || !bytes.Equal(buf[:k], wbuf[:k]) {
				t.Fatalf("content differs at offset %d", read)
			}
			read += int64(k)
			if sinceSample += int64(k); sinceSample >= 8<<20 {
				sinceSample = 0
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				maxHeap = max(maxHeap, ms.HeapInuse)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read at %d: %v", read, err)
		}
	}
	if read != size {
		t.Fatalf("read %d bytes, want %d", read, size)
	}
	if grow := int64(maxHeap) - int64(base); grow > allowed {
		t.Fatalf("heap grew by %d MiB while reading 256 MiB (limit %d MiB)", grow>>20, allowed>>20)
	}
	t.Logf("256 MiB put+verified read; heap growth put %d KiB, read %d KiB", (int64(src.maxHeap)-int64(base))>>10, (int64(maxHeap)-int64(base))>>10)
}
