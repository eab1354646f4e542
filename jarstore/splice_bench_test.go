package jarstore_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
)

var benchDir = flag.String("jarstore.benchdir", "", "directory for the upload benchmarks' files (default: a temporary directory)")

// BenchmarkUpload compares the two ways the master receives an upload
// of a file sent by sendfile over loopback TCP (as the CLI sends it) into
// a directory store: "stream" is Blobs.Put reading the socket into user
// space (what net/http's body reader gives), "splice" is Blobs.PutSized
// taking it off the socket by splice with the hash behind through
// mappings. b.N uploads of -benchtime's size; set the size with
// GEAR_BENCH_UPLOAD_MIB (default 256).
//
//	flock /tmp/gear-bench.lock go test ./jarstore -run NONE -bench Upload -benchtime 3x -jarstore.benchdir /var/tmp
func BenchmarkUpload(b *testing.B) {
	mib := 256
	if v := os.Getenv("GEAR_BENCH_UPLOAD_MIB"); v != "" {
		if _, err := fmt.Sscan(v, &mib); err != nil {
			b.Fatal(err)
		}
	}
	dir := *benchDir
	if dir == "" {
		dir = b.TempDir()
	}
	work, err := os.MkdirTemp(dir, "upload-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src.bin")
	if err := os.WriteFile(src, randBytes(1, mib<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	size := int64(mib) << 20
	for _, mode := range []string{"stream", "splice"} {
		b.Run(mode, func(b *testing.B) {
			store, err := jarstore.Open(context.Background(), "file://"+mustMkdir(b, filepath.Join(work, mode)), "", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			blobs := jarstore.NewBlobs(store, nil)
			b.SetBytes(size)
			cpu0 := processCPU()
			for b.Loop() {
				conn := sendFile(b, src)
				if mode == "stream" {
					_, _, err = blobs.Put(context.Background(), conn, 0)
				} else {
					_, _, err = blobs.PutSized(context.Background(), nil, conn, size, "")
				}
				conn.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			// Sender and receiver together (one process).
			b.ReportMetric(float64((processCPU()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mustMkdir(b *testing.B, dir string) string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// sendFile returns the receiving end of a loopback TCP connection on
// which another goroutine sends the file at path (io.Copy from an
// *os.File to a *net.TCPConn: sendfile) and closes.
func sendFile(b *testing.B, path string) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(c, f)
	}()
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	return c
}
