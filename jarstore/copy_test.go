package jarstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gear-run/gear/jarstore"
)

// CopyTo copies a blob into a file and verifies the copy, on every
// backend (the directory stores through copy_file_range), across the
// kernel copy's chunk boundary and for an empty blob.
func TestCopyToCopiesAndVerifies(t *testing.T) {
	sizes := []int{0, 1, 8<<20 - 1, 8<<20 + 4097}
	for name, s := range backends(t) {
		b := jarstore.NewBlobs(s, nil)
		for _, size := range sizes {
			data := randBytes(uint64(size), size)
			d, _, err := b.Put(context.Background(), bytes.NewReader(data), 0)
			if err != nil {
				t.Fatal(err)
			}
			dst, err := os.Create(filepath.Join(t.TempDir(), "copy"))
			if err != nil {
				t.Fatal(err)
			}
			n, err := b.CopyTo(context.Background(), d, dst)
			dst.Close()
			if err != nil || n != int64(size) {
				t.Fatalf("%s, %d bytes: CopyTo = %d, %v", name, size, n, err)
			}
			got, _ := os.ReadFile(dst.Name())
			if !bytes.Equal(got, data) {
				t.Fatalf("%s, %d bytes: the copy differs from the blob", name, size)
			}
		}
	}
}

// A blob whose bytes on disk no longer match its digest is reported as
// ErrCorrupt, as are a shorter and a longer file; a missing blob is
// ErrNotFound.
func TestCopyToRefusesCorruptBlob(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, "file://"+dir, "")
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	data := randBytes(3, 9<<20)
	d, _, err := b.Put(context.Background(), bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := jarstore.ObjectName(d)
	path := filepath.Join(dir, obj)
	cases := []struct {
		name  string
		bytes []byte
	}{
		{"flipped byte", func() []byte { c := bytes.Clone(data); c[8<<20+5] ^= 1; return c }()},
		{"shorter", data[:len(data)-1]},
		{"longer", append(bytes.Clone(data), 0)},
	}
	for _, tc := range cases {
		if err := os.WriteFile(path, tc.bytes, 0o644); err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(t.TempDir(), "copy"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.CopyTo(context.Background(), d, dst)
		dst.Close()
		if !errors.Is(err, jarstore.ErrCorrupt) || !strings.Contains(err.Error(), d) {
			t.Errorf("%s: CopyTo = %v, want ErrCorrupt naming the digest", tc.name, err)
		}
	}
	missing := digestOf([]byte("never stored"))
	dst, _ := os.Create(filepath.Join(t.TempDir(), "copy"))
	defer dst.Close()
	if _, err := b.CopyTo(context.Background(), missing, dst); !errors.Is(err, jarstore.ErrNotFound) {
		t.Errorf("missing blob: %v, want ErrNotFound", err)
	}
}

// OpenUnverified hands a directory store's file itself to the caller (so
// an HTTP download is a sendfile), and the other stores' verified reader.
func TestOpenUnverified(t *testing.T) {
	for name, s := range backends(t) {
		b := jarstore.NewBlobs(s, nil)
		data := randBytes(9, 300000)
		d, _, err := b.Put(context.Background(), bytes.NewReader(data), 0)
		if err != nil {
			t.Fatal(err)
		}
		rc, size, err := b.OpenUnverified(context.Background(), d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes (size %d), err %v", name, len(got), size, err)
		}
		if _, isFile := rc.(*os.File); isFile != (name != "mem") {
			t.Errorf("%s: reader is %T", name, rc)
		}
	}
}
