// Command jarstore-bench measures storing a bundle in a file:// jar store
// (jarstore.Blobs.Put: streaming, SHA-256, fsync, rename) against `cp` of the
// same file on the same disk in the same run, and reports the ratio and the
// process's peak RSS (which must stay small whatever the size).
//
// It is a benchmark, not a test: it asserts nothing.
//
//	go run ./scripts/bench/jarstore -size 1GiB -dir /var/tmp
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gear-run/gear/jarstore"
)

func main() {
	size := flag.Int64("size", 1<<30, "bytes of the synthetic bundle")
	dir := flag.String("dir", os.TempDir(), "directory (disk) to benchmark on")
	flag.Parse()
	if err := run(*size, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "jarstore-bench:", err)
		os.Exit(1)
	}
}

func run(size int64, dir string) error {
	work, err := os.MkdirTemp(dir, "jarstore-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "bundle.bin")
	if err := writeRandom(src, size); err != nil {
		return err
	}
	// cp baseline, with sync so both sides pay for durability.
	cpDst := filepath.Join(work, "cp-copy.bin")
	start := time.Now()
	if out, err := exec.Command("cp", src, cpDst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	if out, err := exec.Command("sync", cpDst).CombinedOutput(); err != nil {
		return fmt.Errorf("sync: %v: %s", err, out)
	}
	cpDur := time.Since(start)
	_ = os.Remove(cpDst)

	storeDir := filepath.Join(work, "store")
	if err := os.Mkdir(storeDir, 0o755); err != nil {
		return err
	}
	ctx := context.Background()
	s, err := jarstore.Open(ctx, "file://"+storeDir, "", nil)
	if err != nil {
		return err
	}
	defer s.Close()
	b := jarstore.NewBlobs(s, nil)
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	start = time.Now()
	d, n, err := b.Put(ctx, f, 0)
	putDur := time.Since(start)
	f.Close()
	if err != nil {
		return err
	}
	start = time.Now()
	if err := b.Verify(ctx, d); err != nil {
		return err
	}
	readDur := time.Since(start)

	mib := float64(size) / (1 << 20)
	fmt.Printf("size            %d bytes (%.0f MiB) on %s\n", n, mib, dir)
	fmt.Printf("cp+sync         %v  (%.0f MiB/s)\n", cpDur.Round(time.Millisecond), mib/cpDur.Seconds())
	fmt.Printf("Blobs.Put       %v  (%.0f MiB/s)  digest %s\n", putDur.Round(time.Millisecond), mib/putDur.Seconds(), d)
	fmt.Printf("Blobs verify    %v  (%.0f MiB/s, page cache warm)\n", readDur.Round(time.Millisecond), mib/readDur.Seconds())
	fmt.Printf("ratio put/cp    %.2f\n", putDur.Seconds()/cpDur.Seconds())
	fmt.Printf("peak RSS        %s\n", peakRSS())
	return nil
}

func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		return err
	}
	for left := size; left > 0; {
		n := min(left, int64(len(block)))
		block[0]++ // vary the content a little per MiB
		if _, err := f.Write(block[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// peakRSS reads VmHWM from /proc/self/status (Linux).
func peakRSS() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}
