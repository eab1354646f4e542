// Command jarstore-bench measures moving a bundle through gear's jar store
// against `cp` of the same file on the same disk, in the same run:
//
//	(a) cp + sync of the bundle (the baseline);
//	(b) `gear app submit` of the bundle through a real master process into a
//	    file:// jar store: CLI start to exit (upload, store, fsync, register
//	    the app), and the master's own "bundle stored ... took" figure;
//	(c) a real worker's fetch into its cache: from `gear app scale 1` to the
//	    verified file appearing in the worker's cache, and a plain
//	    GET /api/v1/bundles/{digest} streamed to a file with SHA-256 checking
//	    as the worker does;
//	(d) jarstore.Blobs.Put in-process (no HTTP), the store's own cost;
//
// plus peak RSS (VmHWM; ru_maxrss for the short-lived CLI) of the CLI,
// master and worker, which must stay small (< 64 MiB) whatever the size.
// Each step runs -reps times; medians are reported, with ratios to cp.
//
// It is a benchmark, not a test: it asserts nothing.
//
//	go run ./scripts/bench/jarstore -size 1GiB -dir /var/tmp
//	go run ./scripts/bench/jarstore -size 1GiB -dir /var/tmp -hdfs   # hdfs:// on test/hdfsd
package main

import (
	"github.com/gear-run/gear/scripts/bench/internal/ports"
	"github.com/gear-run/gear/scripts/bench/internal/procstat"

	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/test/hdfsd"
)

func main() {
	size := flag.String("size", "1GiB", "payload size of the synthetic bundle (e.g. 256MiB, 1GiB)")
	dir := flag.String("dir", os.TempDir(), "directory (disk) to benchmark on: the bundle, cp copy, jar store and worker cache all live here")
	reps := flag.Int("reps", 3, "repetitions of each measurement (medians are reported)")
	gearBin := flag.String("gear", "", "gear binary (default: go build . into the work dir)")
	hdfs := flag.Bool("hdfs", false, "use an hdfs:// jar store on the in-process HDFS test server (test/hdfsd, blocks kept as files in -dir) instead of file://")
	flag.Parse()
	n, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jarstore-bench: -size:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, n, *dir, max(*reps, 1), *gearBin, *hdfs); err != nil {
		fmt.Fprintln(os.Stderr, "jarstore-bench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f <= 0 {
				return 0, fmt.Errorf("%q is not a size like 1GiB", s)
			}
			return int64(f * float64(u.mult)), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size like 1GiB", s)
	}
	return v, nil
}

// sample is one measurement: wall time and, where known, CPU time.
type sample struct{ wall, cpu time.Duration }

type series []sample

func (s series) median() sample {
	w := make([]time.Duration, len(s))
	c := make([]time.Duration, len(s))
	for i, x := range s {
		w[i], c[i] = x.wall, x.cpu
	}
	slices.Sort(w)
	slices.Sort(c)
	return sample{w[len(w)/2], c[len(c)/2]}
}

func (s series) String() string {
	var parts []string
	for _, x := range s {
		parts = append(parts, x.wall.Round(time.Millisecond).String())
	}
	return strings.Join(parts, " ")
}

type bench struct {
	work, gear, bundle string
	size               int64 // bundle file size
	env                []string
	procs              []*exec.Cmd
}

func run(ctx context.Context, payload int64, dir string, reps int, gearBin string, hdfs bool) error {
	work, err := os.MkdirTemp(dir, "jarstore-bench-")
	if err != nil {
		return err
	}
	b := &bench{work: work}
	defer os.RemoveAll(work)
	defer b.stopAll()

	if b.gear = gearBin; b.gear == "" {
		b.gear = filepath.Join(work, "gear")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.gear, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("go build (run from the repository root or pass -gear): %v\n%s", err, out)
		}
	}
	b.bundle = filepath.Join(work, "big.tar.gz")
	if err := writeBundle(b.bundle, payload); err != nil {
		return fmt.Errorf("build bundle: %w", err)
	}
	fi, err := os.Stat(b.bundle)
	if err != nil {
		return err
	}
	b.size = fi.Size()
	mib := float64(b.size) / (1 << 20)
	fmt.Printf("bundle          %s: %d bytes (%.0f MiB), %d reps, on %s\n", filepath.Base(b.bundle), b.size, mib, reps, dir)

	// (a) baseline
	var cpS series
	for range reps {
		s, err := cpSync(ctx, b.bundle, filepath.Join(work, "cp-copy.bin"))
		if err != nil {
			return err
		}
		cpS = append(cpS, s)
	}

	// a master with a file:// store, and its config
	port, err := ports.Free()
	if err != nil {
		return err
	}
	master := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	store := filepath.Join(work, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		return err
	}
	root := "file://" + store
	if hdfs {
		// The HDFS test server in this process, its blocks as files
		// on the same disk, 128 MiB blocks as HDFS has by default.
		blocks := filepath.Join(work, "hdfs-blocks")
		if err := os.Mkdir(blocks, 0o755); err != nil {
			return err
		}
		hc, err := hdfsd.Start(hdfsd.Options{BlockSize: 128 << 20, Dir: blocks})
		if err != nil {
			return fmt.Errorf("start the HDFS test server: %w", err)
		}
		defer hc.Close()
		root = "hdfs://" + hc.NameNodeAddr() + "/gear/jars"
		fmt.Printf("jar store       %s (test/hdfsd, blocks in %s)\n", root, blocks)
	}
	conf := filepath.Join(work, "gear.conf")
	confText := fmt.Sprintf("gear.cluster.masters = [%q]\ngear.jarstore.rootpath = %q\ngear.jarstore.max-bundle-size = 64GB\ngear.worker.cpus = [0]\n", master, root)
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		return err
	}
	b.env = append(os.Environ(), "GEAR_CONF="+conf)
	mp, mlog, err := b.daemon(ctx, "master", "master", "-ip", "127.0.0.1", "-port", strconv.Itoa(port), "-datadir", filepath.Join(work, "master"))
	if err != nil {
		return err
	}
	client := cluster.NewClient([]string{master}, "")
	if err := poll(ctx, 30*time.Second, "the master to lead", func() bool {
		ms, err := client.MasterList(ctx)
		return err == nil && len(ms) > 0 && ms[0].State == "leader"
	}); err != nil {
		return fmt.Errorf("%w (log: %s)", err, mlog)
	}

	// (b) upload through the CLI
	var upS, storeS series
	var cliRSS int64
	var appID, digest string
	for i := range reps {
		before := countMatches(mlog, storedRe)
		mcpu0 := procstat.CPU(mp.Process.Pid)
		start := time.Now()
		cmd := exec.CommandContext(ctx, b.gear, "app", "submit", b.bundle, "-executors", "0", "-quiet")
		cmd.Env = b.env
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("gear app submit: %v: %s", err, stderrOf(err))
		}
		wall := time.Since(start)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		upS = append(upS, sample{wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()})
		cliRSS = max(cliRSS, ru.Maxrss<<10)
		took, err := waitStored(ctx, mlog, before)
		if err != nil {
			return err
		}
		storeS = append(storeS, sample{took, procstat.CPU(mp.Process.Pid) - mcpu0})
		id := strings.TrimSpace(string(out))
		if i == 0 {
			appID = id
		} else if err := client.Kill(ctx, id); err != nil { // one app keeps the bundle referenced
			return err
		}
	}
	app, err := client.App(ctx, appID)
	if err != nil {
		return err
	}
	digest = app.Bundle.Digest
	masterRSSUpload := procstat.PeakRSS(mp.Process.Pid)

	// (c1) direct GET streamed to a file with hashing, as the worker does
	var getS, serveS series
	for range reps {
		mcpu0 := procstat.CPU(mp.Process.Pid)
		s, err := fetchDirect(ctx, client, digest, filepath.Join(work, "get.bin"))
		if err != nil {
			return err
		}
		getS = append(getS, s)
		serveS = append(serveS, sample{s.wall, procstat.CPU(mp.Process.Pid) - mcpu0})
	}

	// (c2) a real worker: from scale-up to the verified cached file
	var wrkS, fetchS series
	var workerRSS int64
	hexd := strings.TrimPrefix(digest, "sha256:")
	for i := range reps {
		wdir := filepath.Join(work, fmt.Sprintf("worker%d", i))
		wp, wlog, err := b.daemon(ctx, fmt.Sprintf("worker%d", i), "worker", "-ip", "127.0.0.1", "-datadir", wdir)
		if err != nil {
			return err
		}
		if err := poll(ctx, 30*time.Second, "the worker to register", func() bool {
			ws, err := client.Workers(ctx)
			return err == nil && len(ws) > 0 && aliveWorkers(ws) == 1
		}); err != nil {
			return fmt.Errorf("%w (log: %s)", err, wlog)
		}
		cached := filepath.Join(wdir, "bundles", hexd+".bundle")
		wcpu0 := procstat.CPU(wp.Process.Pid)
		start := time.Now()
		if err := client.Scale(ctx, appID, cluster.ScaleRequest{Instances: 1}); err != nil {
			return err
		}
		// The fetch starts when the worker creates its temporary file
		// (after the assignment reached it with a heartbeat reply) and
		// ends when the verified file is renamed into place.
		var fetchStart time.Time
		if err := pollFast(ctx, 5*time.Minute, "the worker to cache the bundle", func() bool {
			if fetchStart.IsZero() {
				if tmps, _ := filepath.Glob(filepath.Join(wdir, "bundles", ".fetch-*")); len(tmps) > 0 {
					fetchStart = time.Now()
				}
			}
			_, err := os.Stat(cached)
			return err == nil
		}); err != nil {
			return fmt.Errorf("%w (log: %s)", err, wlog)
		}
		end := time.Now()
		wrkS = append(wrkS, sample{end.Sub(start), procstat.CPU(wp.Process.Pid) - wcpu0})
		if !fetchStart.IsZero() {
			fetchS = append(fetchS, sample{wall: end.Sub(fetchStart)})
		}
		workerRSS = max(workerRSS, procstat.PeakRSS(wp.Process.Pid))
		if err := client.Scale(ctx, appID, cluster.ScaleRequest{Instances: 0}); err != nil {
			return err
		}
		if err := poll(ctx, time.Minute, "the executor to stop", func() bool {
			a, err := client.App(ctx, appID)
			return err == nil && len(a.Executors) == 0 || err == nil && allStopped(a)
		}); err != nil {
			return err
		}
		stop(wp)
		_ = os.RemoveAll(wdir)
	}
	masterRSS := procstat.PeakRSS(mp.Process.Pid)

	// (d) Blobs.Put in-process
	var putS series
	for i := range reps {
		s, err := blobsPut(ctx, b.bundle, root, filepath.Join(work, "inproc-store"), i)
		if err != nil {
			return err
		}
		putS = append(putS, s)
	}

	cp := cpS.median()
	line := func(name string, s series, cpu bool) {
		m := s.median()
		extra := ""
		if cpu {
			extra = fmt.Sprintf("  cpu %v", m.cpu.Round(time.Millisecond))
		}
		fmt.Printf("%-34s %8v  %5.0f MiB/s  ratio %.2f x cp  (throughput %.2f x cp)%s  [%s]\n", name, m.wall.Round(time.Millisecond),
			mib/m.wall.Seconds(), m.wall.Seconds()/cp.wall.Seconds(), cp.wall.Seconds()/m.wall.Seconds(), extra, s)
	}
	fmt.Printf("%-34s %8v  %5.0f MiB/s  baseline  [%s]\n", "(a) cp + sync", cp.wall.Round(time.Millisecond), mib/cp.wall.Seconds(), cpS)
	line("(b) gear app submit (CLI wall)", upS, true)
	// The first submit of a digest is the one where the master reads the
	// stored bundle (unless it did while receiving it); the later reps
	// find its reading remembered.
	line("(b)   first submit only (rep 1)", upS[:1], true)
	line("(b) master: upload stored (log)", storeS, true)
	line("(c) worker: scale 1 -> cached", wrkS, true)
	if len(fetchS) > 0 {
		line("(c) worker fetch (tmp -> cached)", fetchS, false)
	}
	line("(c) GET /api/v1/bundles + sha256", getS, true)
	line("(c) master serving that GET", serveS, true)
	line("(d) Blobs.Put in-process", putS, true)
	fmt.Printf("peak RSS        CLI %s, master %s (after upload %s), worker %s (target < 64 MiB each)\n",
		kib(cliRSS), kib(masterRSS), kib(masterRSSUpload), kib(workerRSS))
	fmt.Printf("load average    %s", readLoad())
	return nil
}

// writeBundle writes a tar.gz holding gear-app.conf (first, so it is found
// quickly) and a random payload of the given size, stored without
// compression (random data does not compress; level 0 keeps it fast).
func writeBundle(path string, payload int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.NoCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	manifest := []byte("name = \"big\"\nprocesses { x { command = [\"/bin/sleep\", \"1000\"], instances = 0, cpus = 1 } }\n")
	if err := tw.WriteHeader(&tar.Header{Name: "gear-app.conf", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(manifest); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "payload.bin", Mode: 0o644, Size: payload, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		return err
	}
	for left := payload; left > 0; {
		n := min(left, int64(len(block)))
		block[0]++ // vary the content per MiB
		if _, err := tw.Write(block[:n]); err != nil {
			return err
		}
		left -= n
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// cpSync is the baseline: cp to the same disk and sync the copy.
func cpSync(ctx context.Context, src, dst string) (sample, error) {
	defer os.Remove(dst)
	start := time.Now()
	cp := exec.CommandContext(ctx, "cp", src, dst)
	if out, err := cp.CombinedOutput(); err != nil {
		return sample{}, fmt.Errorf("cp: %v: %s", err, out)
	}
	sy := exec.CommandContext(ctx, "sync", dst)
	if out, err := sy.CombinedOutput(); err != nil {
		return sample{}, fmt.Errorf("sync: %v: %s", err, out)
	}
	cpu := cp.ProcessState.UserTime() + cp.ProcessState.SystemTime() + sy.ProcessState.UserTime() + sy.ProcessState.SystemTime()
	return sample{time.Since(start), cpu}, nil
}

// fetchDirect downloads a bundle as worker/cache.go does (stream to a file,
// SHA-256 alongside, fsync-free), timing it and the CPU this process used.
func fetchDirect(ctx context.Context, c *cluster.Client, digest, dst string) (sample, error) {
	defer os.Remove(dst)
	cpu0 := selfCPU()
	start := time.Now()
	rc, err := c.OpenBundle(ctx, digest)
	if err != nil {
		return sample{}, err
	}
	defer rc.Close()
	f, err := os.Create(dst)
	if err != nil {
		return sample{}, err
	}
	defer f.Close()
	h := jarstore.NewHashReader(rc, -1, digest)
	defer h.Close()
	if _, err := io.Copy(f, h); err != nil {
		return sample{}, fmt.Errorf("GET %s: %w", digest, err)
	}
	if err := f.Close(); err != nil {
		return sample{}, err
	}
	return sample{time.Since(start), selfCPU() - cpu0}, nil
}

func blobsPut(ctx context.Context, src, root, storeDir string, rep int) (sample, error) {
	uri := "file://" + storeDir
	if strings.HasPrefix(root, "hdfs://") {
		uri = fmt.Sprintf("%s-inproc%d", root, rep) // a fresh directory: no blob to find
	} else {
		if err := os.MkdirAll(storeDir, 0o755); err != nil {
			return sample{}, err
		}
		defer os.RemoveAll(storeDir)
	}
	s, err := jarstore.Open(ctx, uri, "", nil)
	if err != nil {
		return sample{}, err
	}
	defer s.Close()
	f, err := os.Open(src)
	if err != nil {
		return sample{}, err
	}
	defer f.Close()
	cpu0 := selfCPU()
	start := time.Now()
	if _, _, err := jarstore.NewBlobs(s, nil).Put(ctx, f, 0); err != nil {
		return sample{}, err
	}
	return sample{time.Since(start), selfCPU() - cpu0}, nil
}

var storedRe = regexp.MustCompile(`bundle stored.*took=([0-9.]+[a-zµ]+)`)

// waitStored waits for the master's log to report the upload after the
// first `before` ones and returns its "took".
func waitStored(ctx context.Context, log string, before int) (time.Duration, error) {
	var took time.Duration
	err := poll(ctx, 30*time.Second, "the master to log the stored bundle", func() bool {
		data, _ := os.ReadFile(log)
		all := storedRe.FindAllStringSubmatch(string(data), -1)
		if len(all) <= before {
			return false
		}
		d, err := time.ParseDuration(all[before][1])
		took = d
		return err == nil
	})
	return took, err
}

func countMatches(path string, re *regexp.Regexp) int {
	data, _ := os.ReadFile(path)
	return len(re.FindAllIndex(data, -1))
}

func (b *bench) daemon(ctx context.Context, name string, args ...string) (*exec.Cmd, string, error) {
	log := filepath.Join(b.work, name+".log")
	f, err := os.Create(log)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(b.gear, args...)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", err
	}
	f.Close()
	b.procs = append(b.procs, cmd)
	return cmd, log, nil
}

// stop ends a daemon started by this benchmark (SIGTERM, then SIGKILL to
// its process group after 20 s).
func stop(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		stop(b.procs[i])
	}
}

func aliveWorkers(ws []cluster.Worker) int {
	n := 0
	for _, w := range ws {
		if w.Alive {
			n++
		}
	}
	return n
}

func allStopped(a *cluster.App) bool {
	for _, e := range a.Executors {
		if e.State != cluster.Stopped {
			return false
		}
	}
	return true
}

func poll(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	return pollEvery(ctx, timeout, 100*time.Millisecond, what, cond)
}

// pollFast polls every 5 ms, for timing.
func pollFast(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	return pollEvery(ctx, timeout, 5*time.Millisecond, what, cond)
}

func pollEvery(ctx context.Context, timeout, every time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func kib(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func readLoad() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown\n"
	}
	return string(data)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
