package bundle

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// writeBomb streams a .tar.gz holding a gear-app.conf and one file of size
// zero bytes into w, without holding either in memory.
func writeBomb(w io.Writer, size int64) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	conf := []byte("name = bomb\nprocesses { p { command = [\"./run\"] } }\n")
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o644, Size: int64(len(conf)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(conf); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "run", Mode: 0o755, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.CopyBuffer(tw, io.LimitReader(zeros{}, size), make([]byte, 1<<20)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// streamBomb returns a reader of a bomb of size zero bytes that is only
// compressed as far as it is read, and a func that stops the generator.
func streamBomb(size int64) (io.Reader, func()) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBomb(pw, size)) }()
	return pr, func() { pr.CloseWithError(errors.New("test done")) }
}

func TestUnpackRefusesBombEarly(t *testing.T) {
	// The bomb: 2 GiB of zeros (about 2 MB of .tar.gz). Streamed, it
	// costs only what Unpack reads before refusing it.
	src, stop := streamBomb(2 << 30)
	defer stop()
	in := &countingReader{r: src}
	base := t.TempDir()
	dest := filepath.Join(base, "app")
	start := time.Now()
	err := Unpack(context.Background(), in, KindTarGz, dest, Limits{})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "gear.bundle.max-expansion") {
		t.Fatalf("Unpack(2 GiB bomb) = %v, want ErrLimit naming gear.bundle.max-expansion", err)
	}
	// 2 GiB of zeros compress to about 2 MB; the refusal comes after
	// ExpansionFloor of content, i.e. some 16 KB of the archive.
	if in.n > 1<<20 {
		t.Fatalf("Unpack read %d archive bytes before refusing: the check did not stop it early", in.n)
	}
	t.Logf("refused after %d archive bytes in %v: %v", in.n, time.Since(start).Round(time.Millisecond), err)
	if l := leftovers(t, base, ""); len(l) != 0 {
		t.Fatalf("a refused bomb left %v behind", l)
	}
}

func TestUnpackSizeLimitStopsEarly(t *testing.T) {
	// With the ratio check off, the size limit stops it after MaxBytes.
	src, stop := streamBomb(2 << 30)
	defer stop()
	in := &countingReader{r: src}
	base := t.TempDir()
	err := Unpack(context.Background(), in, KindTarGz, filepath.Join(base, "app"), Limits{MaxBytes: 8 << 20, MaxExpansion: -1})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "gear.bundle.max-unpacked-size") || !strings.Contains(err.Error(), "8MiB") {
		t.Fatalf("Unpack = %v, want ErrLimit naming gear.bundle.max-unpacked-size and 8MiB", err)
	}
	if in.n > 1<<20 {
		t.Fatalf("Unpack read %d archive bytes before refusing", in.n)
	}
	if l := leftovers(t, base, ""); len(l) != 0 {
		t.Fatalf("a refused bomb left %v behind", l)
	}
}

// compressible returns n bytes that gzip compresses about 6:1, like
// real jars and tarballs at their most compressible.
func compressible(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := 0; i < n; i += 64 {
		for j := i; j < min(i+8, n); j++ {
			b[j] = byte(r.IntN(256))
		}
	}
	return b
}

func TestRealisticBundlesPass(t *testing.T) {
	body := string(compressible(24 << 20)) // above ExpansionFloor
	data := tarGz(t, file(ManifestName, "name = real\nprocesses { p { command = [\"./run\"] } }\n"), exe("run", "#!/bin/sh\n"), file("data.bin", body))
	ratio := float64(len(body)) / float64(len(data))
	if ratio < 4 || ratio > 12 {
		t.Fatalf("test data compresses %.1f:1, want a realistic 4..12:1", ratio)
	}
	dest := filepath.Join(t.TempDir(), "app")
	if err := Unpack(context.Background(), bytes.NewReader(data), KindTarGz, dest, Limits{}); err != nil {
		t.Fatalf("Unpack of a %.1f:1 tarball: %v", ratio, err)
	}
	p := writeTemp(t, "real.tar.gz", data)
	if _, _, err := Inspect(p, "", nil); err != nil {
		t.Fatalf("Inspect of a %.1f:1 tarball: %v", ratio, err)
	}
	zdata := zipBytes(t, file(ManifestName, "name = real\nprocesses { p { command = [\"./run\"] } }\n"), exe("run", "#!/bin/sh\n"), file("data.bin", body))
	if err := Unpack(context.Background(), bytes.NewReader(zdata), KindZip, filepath.Join(t.TempDir(), "app"), Limits{}); err != nil {
		t.Fatalf("Unpack of a realistic zip: %v", err)
	}
	if _, _, err := Inspect(writeTemp(t, "real.zip", zdata), "", nil); err != nil {
		t.Fatalf("Inspect of a realistic zip: %v", err)
	}
}

func TestExpansionLimitLowered(t *testing.T) {
	// 1000:1 is refused at the default; a lowered limit refuses 6:1 too.
	body := string(compressible(20 << 20))
	data := tarGz(t, file("data.bin", body))
	base := t.TempDir()
	err := Unpack(context.Background(), bytes.NewReader(data), KindTarGz, filepath.Join(base, "app"), Limits{MaxExpansion: 2})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "over 2:1") {
		t.Fatalf("Unpack with max-expansion 2 = %v, want ErrLimit over 2:1", err)
	}
	if l := leftovers(t, base, ""); len(l) != 0 {
		t.Fatalf("left %v behind", l)
	}
}

func TestZipBombRefusedBeforeExtracting(t *testing.T) {
	// One entry of 32 MiB zeros: its central directory says so, and it is
	// refused before a byte is written.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "zeros", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.LimitReader(zeros{}, 32<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	err = Unpack(context.Background(), bytes.NewReader(buf.Bytes()), KindZip, filepath.Join(base, "app"), Limits{})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "gear.bundle.max-expansion") {
		t.Fatalf("Unpack(zip bomb) = %v, want ErrLimit naming gear.bundle.max-expansion", err)
	}
	if l := leftovers(t, base, ""); len(l) != 0 {
		t.Fatalf("left %v behind", l)
	}
}

func TestInspectRefusesBomb(t *testing.T) {
	// A 64 MiB bomb written to disk (streamed, a few hundred KB): the
	// CLI refuses it before uploading, at the default limits, and with
	// lowered ones.
	p := filepath.Join(t.TempDir(), "bomb.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	if err := writeBomb(bw, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Inspect(p, "", nil); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "gear.bundle.max-expansion") {
		t.Fatalf("Inspect(bomb) = %v, want ErrLimit naming gear.bundle.max-expansion", err)
	}
	_, _, err = InspectLimits(p, "", nil, Limits{MaxBytes: 1 << 20, MaxExpansion: -1})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "gear.bundle.max-unpacked-size") {
		t.Fatalf("InspectLimits(bomb, 1MiB) = %v, want ErrLimit naming gear.bundle.max-unpacked-size", err)
	}
	if _, _, err := InspectLimits(p, "", nil, Limits{MaxBytes: -1, MaxExpansion: -1}); err != nil {
		t.Fatalf("InspectLimits(bomb, no limits) = %v", err)
	}
}

func TestInspectRefusesSymlinksOut(t *testing.T) {
	conf := file(ManifestName, "name = l\nprocesses { p { command = [\"./run\"] } }\n")
	run := exe("run", "#!/bin/sh\n")
	cases := []struct {
		name string
		path string
		data []byte
		msg  string
	}{
		{"absolute", "a.tar.gz", tarGz(t, conf, run, symlinkEntry("etc", "/etc")), `symlink "etc" points to absolute path "/etc"`},
		{"up", "a.tar.gz", tarGz(t, conf, run, symlinkEntry("lib/up", "../../x")), `symlink "lib/up" points to "../../x", outside the bundle`},
		{"chain", "a.tar.gz", tarGz(t, conf, run, symlinkEntry("r", "."), symlinkEntry("e", "r/..")), `symlink "e" resolves outside the bundle`},
		{"dangling", "a.tar.gz", tarGz(t, conf, run, symlinkEntry("d", "missing")), `symlink "d" does not resolve`},
		{"zip up", "a.zip", zipBytes(t, conf, run, symlinkEntry("x", "../../etc/passwd")), `symlink "x" points to "../../etc/passwd", outside the bundle`},
		{"hardlink out", "a.tar.gz", tarGz(t, conf, run, hardlinkEntry("h", "../etc/passwd")), `hard link "h"`},
		{"fifo", "a.tar.gz", tarGz(t, conf, run, entry{name: "pipe", typ: tar.TypeFifo, mode: 0o666}), "FIFO"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Inspect(writeTemp(t, c.path, c.data), "", nil)
			if !errors.Is(err, ErrUnsafeEntry) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Inspect = %v, want ErrUnsafeEntry containing %q", err, c.msg)
			}
			// The worker refuses the same bundle.
			kind, _ := KindOf(c.path)
			if err := Unpack(context.Background(), bytes.NewReader(c.data), kind, filepath.Join(t.TempDir(), "app"), Limits{}); !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("Unpack = %v, want ErrUnsafeEntry too", err)
			}
		})
	}
	// Links that stay inside pass, also through linked directories.
	ok := tarGz(t, conf, run, dirEntry("lib/"), file("lib/a.so.1", "x"), symlinkEntry("lib/a.so", "a.so.1"),
		symlinkEntry("bin", "lib"), symlinkEntry("b2", "bin/a.so"), symlinkEntry("self", "."), symlinkEntry("up", "self/lib/../run"))
	if _, _, err := Inspect(writeTemp(t, "ok.tar.gz", ok), "", nil); err != nil {
		t.Fatalf("Inspect(links inside) = %v", err)
	}
	if err := Unpack(context.Background(), bytes.NewReader(ok), KindTarGz, filepath.Join(t.TempDir(), "app"), Limits{}); err != nil {
		t.Fatalf("Unpack(links inside) = %v", err)
	}
}
