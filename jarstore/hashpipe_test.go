package jarstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gear-run/gear/jarstore"
)

// onlyReader hides WriteTo so io.Copy goes through Read.
type onlyReader struct{ io.Reader }

func TestHashReaderPassesAndHashes(t *testing.T) {
	const mib = 1 << 20
	sizes := []int{0, 1, 4095, mib - 1, mib, mib + 1, 5*mib + 3}
	sources := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"half", iotest.HalfReader},
		{"data+EOF", iotest.DataErrReader},
	}
	consumers := []struct {
		name string
		copy func(io.Writer, *jarstore.HashReader) (int64, error)
	}{
		{"WriteTo", func(w io.Writer, h *jarstore.HashReader) (int64, error) { return io.Copy(w, h) }},
		{"Read 7KiB", func(w io.Writer, h *jarstore.HashReader) (int64, error) {
			return io.CopyBuffer(w, onlyReader{h}, make([]byte, 7<<10))
		}},
	}
	for _, size := range sizes {
		data := randBytes(uint64(size), size)
		for _, src := range sources {
			for _, cons := range consumers {
				t.Run(strings.Join([]string{src.name, cons.name}, "/")+"/"+strconv.Itoa(size), func(t *testing.T) {
					h := jarstore.NewHashReader(src.wrap(bytes.NewReader(data)), -1, digestOf(data))
					defer h.Close()
					var out bytes.Buffer
					n, err := cons.copy(&out, h)
					if err != nil || n != int64(size) || !bytes.Equal(out.Bytes(), data) {
						t.Fatalf("copy = %d, %v; content equal %v", n, err, bytes.Equal(out.Bytes(), data))
					}
					if got := h.Digest(); got != digestOf(data) {
						t.Fatalf("Digest() = %s, want %s", got, digestOf(data))
					}
					if h.Size() != int64(size) {
						t.Fatalf("Size() = %d, want %d", h.Size(), size)
					}
					// Reads past the end keep saying EOF.
					if k, err := h.Read(make([]byte, 10)); k != 0 || err != io.EOF {
						t.Fatalf("Read after EOF = %d, %v", k, err)
					}
				})
			}
		}
	}
}

func TestHashReaderErrors(t *testing.T) {
	data := randBytes(9, 3<<20+17)
	boom := errors.New("boom")
	cases := []struct {
		name    string
		src     io.Reader
		max     int64
		want    string
		wantErr error
		msg     string
	}{
		{name: "over the limit", src: bytes.NewReader(data), max: int64(len(data)) - 1, wantErr: jarstore.ErrTooLarge, msg: "more than"},
		{name: "at the limit", src: bytes.NewReader(data), max: int64(len(data))},
		{name: "digest mismatch", src: bytes.NewReader(data), max: -1, want: digestOf([]byte("other")), wantErr: jarstore.ErrDigestMismatch, msg: "upload again"},
		{name: "source fails mid-stream", src: io.MultiReader(bytes.NewReader(data[:2<<20+5]), iotest.ErrReader(boom)), max: -1, wantErr: boom},
		// A cut HTTP body says io.ErrUnexpectedEOF: never a clean end.
		{name: "source cut short", src: io.MultiReader(bytes.NewReader(data[:1<<20+5]), iotest.ErrReader(io.ErrUnexpectedEOF)), max: -1, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := jarstore.NewHashReader(tc.src, tc.max, tc.want)
			defer h.Close()
			_, err := io.Copy(io.Discard, h)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("copy = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("copy = %v, want %v mentioning %q", err, tc.wantErr, tc.msg)
			}
			if _, err2 := h.Read(make([]byte, 1)); !errors.Is(err2, tc.wantErr) {
				t.Fatalf("Read after the error = %v, want the same error again", err2)
			}
		})
	}
}

// Close stops the goroutines whether or not the stream was consumed, and
// returns once the source read in progress returns.
func TestHashReaderCloseEarly(t *testing.T) {
	pr, pw := io.Pipe()
	h := jarstore.NewHashReader(pr, -1, "")
	go func() {
		_, _ = pw.Write(make([]byte, 100))
		_ = pw.Close()
	}()
	buf := make([]byte, 10)
	if _, err := h.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal("second Close:", err)
	}

	// Never read at all, source still open: Close returns once the
	// source's read returns.
	pr2, pw2 := io.Pipe()
	h2 := jarstore.NewHashReader(pr2, -1, "")
	closed := make(chan struct{})
	go func() { _ = h2.Close(); close(closed) }()
	_ = pw2.CloseWithError(errors.New("client went away"))
	<-closed
}

// An upload cut short (the HTTP body reports io.ErrUnexpectedEOF) is never
// stored as a complete blob, on any backend.
func TestBlobsPutCutUpload(t *testing.T) {
	data := randBytes(11, 2<<20+9)
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := jarstore.NewBlobs(s, nil)
			cut := io.MultiReader(bytes.NewReader(data[:1<<20+3]), iotest.ErrReader(io.ErrUnexpectedEOF))
			if _, _, err := b.Put(context.Background(), cut, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Put(cut upload) = %v, want io.ErrUnexpectedEOF", err)
			}
			if got := objectNames(t, s); len(got) != 0 {
				t.Fatalf("objects after a cut upload = %v, want none", got)
			}
		})
	}
}

// A corrupt blob never reaches its stated size through Open (so an HTTP
// download of it is always cut short), whichever way it is read and however
// it is damaged; a good one reads whole.
func TestBlobsOpenHoldsLastByte(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, "file://"+dir, "")
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	data := randBytes(5, 3<<20+77)
	d, _, err := b.Put(context.Background(), bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := jarstore.ObjectName(d)
	path := filepath.Join(dir, name)
	damages := []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"intact", func(b []byte) []byte { return b }},
		{"last byte flipped", func(b []byte) []byte { b = slices.Clone(b); b[len(b)-1] ^= 1; return b }},
		{"first byte flipped", func(b []byte) []byte { b = slices.Clone(b); b[0] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"extended by 6 MiB", func(b []byte) []byte { return append(slices.Clone(b), make([]byte, 6<<20)...) }},
	}
	readers := []struct {
		name string
		read func(io.Reader) (int64, error)
	}{
		{"WriteTo", func(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }},
		{"Read", func(r io.Reader) (int64, error) {
			return io.CopyBuffer(io.Discard, onlyReader{r}, make([]byte, 100_000))
		}},
	}
	for _, dm := range damages {
		for _, rd := range readers {
			t.Run(dm.name+"/"+rd.name, func(t *testing.T) {
				if err := os.WriteFile(path, dm.corrupt(data), 0o644); err != nil {
					t.Fatal(err)
				}
				rc, size, err := b.Open(context.Background(), d)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				n, err := rd.read(rc)
				if dm.name == "intact" {
					if err != nil || n != size {
						t.Fatalf("read %d of %d bytes, %v", n, size, err)
					}
					return
				}
				if !errors.Is(err, jarstore.ErrCorrupt) {
					t.Fatalf("read = %d, %v; want ErrCorrupt", n, err)
				}
				if n >= size {
					t.Fatalf("a corrupt blob delivered %d bytes, its full stated size %d", n, size)
				}
			})
		}
	}
}
