package jarstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
)

// wrapped is a store behind a check, as the master's file:// store-id
// marker is: Blobs reaches the directory store through Inner.
type wrapped struct{ jarstore.Store }

func (w wrapped) Inner(context.Context) (jarstore.Store, error) { return w.Store, nil }

// tcpSource returns the reading end of a loopback TCP connection whose
// other end sends data and then closes: what PutSized splices from.
func tcpSource(t *testing.T, data []byte) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		_, _ = c.Write(data)
		_ = c.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// PutSized stores exactly the declared bytes (read-ahead head first, then
// the connection), on every backend and through a Wrapper; a connection
// that ends early (ErrShortUpload) and a declared digest that does not
// match (ErrDigestMismatch) leave nothing behind.
func TestPutSized(t *testing.T) {
	stores := backends(t)
	stores["file behind a wrapper"] = wrapped{openT(t, "file://"+t.TempDir(), "")}
	for name, s := range stores {
		b := jarstore.NewBlobs(s, nil)
		ctx := context.Background()
		wantDirect := name != "mem"
		if got := b.Direct(ctx); got != wantDirect {
			t.Fatalf("%s: Direct = %t, want %t", name, got, wantDirect)
		}
		data := randBytes(7, 8<<20+4097)
		sum := sha256.Sum256(data)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		head := 1000
		// The connection carries more than the upload: the rest is
		// never read.
		src := tcpSource(t, append(bytes.Clone(data[head:]), "next request"...))
		d, n, err := b.PutSized(ctx, data[:head], src, int64(len(data)), digest)
		if err != nil || d != digest || n != int64(len(data)) {
			t.Fatalf("%s: PutSized = %s, %d, %v; want %s, %d", name, d, n, err, digest, len(data))
		}
		if got, err := readAll(t, b, d); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: stored blob differs (err %v)", name, err)
		}
		// FilePath gives the stored file of a directory store (for the
		// master's inspection in place), nothing for other stores.
		if p, ok := b.FilePath(ctx, d); ok != wantDirect {
			t.Fatalf("%s: FilePath ok = %t, want %t", name, ok, wantDirect)
		} else if ok {
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: FilePath %s does not hold the blob (err %v)", name, p, err)
			}
		}
		if rest, _ := io.ReadAll(src); string(rest) != "next request" {
			t.Fatalf("%s: PutSized read past the upload: %q left", name, rest)
		}

		// Cut short: the connection ends before the declared size.
		other := randBytes(8, 3<<20)
		_, _, err = b.PutSized(ctx, nil, tcpSource(t, other[:1<<20]), int64(len(other)), "")
		if !errors.Is(err, jarstore.ErrShortUpload) {
			t.Fatalf("%s: short upload: %v, want ErrShortUpload", name, err)
		}
		// Damaged: the bytes do not hash to the declared digest.
		_, _, err = b.PutSized(ctx, other[:10], tcpSource(t, other[10:]), int64(len(other)), digest)
		if !errors.Is(err, jarstore.ErrDigestMismatch) {
			t.Fatalf("%s: damaged upload: %v, want ErrDigestMismatch", name, err)
		}
		all, err := s.List(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("%s: store holds %+v (err %v) after the failed uploads; want only the good blob", name, all, err)
		}
	}
}

// PutSizedFollow's follower reads exactly the upload's bytes as they are
// written; when the upload is cut short it ends with the error, never
// with a clean end of a truncated upload.
func TestPutSizedFollow(t *testing.T) {
	b := jarstore.NewBlobs(openT(t, "file://"+t.TempDir(), ""), nil)
	ctx := context.Background()
	data := randBytes(9, 3*8<<20+123)
	var got []byte
	var ferr error
	follow := func(r io.Reader) { got, ferr = io.ReadAll(r) }
	d, _, err := b.PutSizedFollow(ctx, data[:100], tcpSource(t, data[100:]), int64(len(data)), "", follow)
	if err != nil || ferr != nil || !bytes.Equal(got, data) {
		t.Fatalf("PutSizedFollow = %s, %v; follower read %d bytes (err %v), equal %t", d, err, len(got), ferr, bytes.Equal(got, data))
	}
	got, ferr = nil, nil
	_, _, err = b.PutSizedFollow(ctx, nil, tcpSource(t, data[:9<<20]), int64(len(data)), "", follow)
	if !errors.Is(err, jarstore.ErrShortUpload) || !errors.Is(ferr, jarstore.ErrShortUpload) || len(got) > 9<<20 {
		t.Fatalf("cut upload: err %v; follower read %d bytes, err %v; want ErrShortUpload for both", err, len(got), ferr)
	}
}

// The same blob uploaded again replaces the stored file (a fresh copy, a
// fresh age for GC) and the former copy goes away, not left as a
// temporary file.
func TestPutSizedAgain(t *testing.T) {
	dir := t.TempDir()
	b := jarstore.NewBlobs(openT(t, "file://"+dir, ""), nil)
	ctx := context.Background()
	data := randBytes(10, 9<<20)
	var inodes []uint64
	for range 2 {
		d, _, err := b.PutSized(ctx, nil, tcpSource(t, data), int64(len(data)), "")
		if err != nil {
			t.Fatal(err)
		}
		p, ok := b.FilePath(ctx, d)
		if !ok {
			t.Fatalf("no file for %s", d)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		inodes = append(inodes, st.Ino)
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("stored blob differs (err %v)", err)
		}
	}
	if inodes[0] == inodes[1] {
		t.Fatal("the second upload did not replace the stored file")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var tmps []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				tmps = append(tmps, e.Name())
			}
		}
		if len(tmps) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the former copy stayed as %v", tmps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
