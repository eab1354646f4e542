// Command scale benchmarks submit -> running at scale: one master and
// -workers real worker processes (on 127.0.0.1, 127.0.0.2, ...) start
// -executors unpinned executors of a sleep bundle, against a bare Go
// program that fork/execs the same number of `sleep` processes, in the
// same run. For each count it reports the time from `gear app submit`
// (CLI start) until every executor is RUNNING, the bare time, their
// ratio, and the leader's CPU and RSS while the executors run steadily.
// Targets (issue 18): <= bare + 0.5 s at 1000 and <= 1.5x bare at 10 000.
//
// It is a benchmark: it asserts nothing. Every process it starts (the
// daemons, the executors, the bare sleeps) is stopped at the end.
//
//	go run ./scripts/bench/scale                       # 1000 executors on 10 workers
//	go run ./scripts/bench/scale -executors 1000,10000 # needs pid_max and ulimit -u well above 11 000
package main

import (
	"github.com/gear-run/gear/scripts/bench/internal/procstat"

	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func main() {
	counts := flag.String("executors", "1000", "executor counts, comma-separated")
	workers := flag.Int("workers", 10, "worker processes")
	gearBin := flag.String("gear", "", "gear binary (default: go build . into the work dir)")
	steady := flag.Duration("steady", 5*time.Second, "window over which the leader's CPU is measured while all executors run")
	flag.Parse()
	var ns []int
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scale bench: -executors: %q is not a count >= 1\n", s)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, ns, *workers, *gearBin, *steady); err != nil {
		fmt.Fprintln(os.Stderr, "scale bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	work, gear string
	env        []string
	procs      []*exec.Cmd
}

func run(ctx context.Context, ns []int, workers int, gearBin string, steady time.Duration) error {
	work, err := os.MkdirTemp("", "gear-bench-scale-")
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
	bundle := filepath.Join(work, "sleep.tar.gz")
	if err := writeBundle(bundle); err != nil {
		return err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	master := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(work, "gear.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("gear.cluster.masters = [%q]\n", master)), 0o644); err != nil {
		return err
	}
	b.env = append(os.Environ(), "GEAR_CONF="+conf)
	mp, mlog, err := b.daemon(ctx, "master", "master", "-ip", "127.0.0.1", "-port", strconv.Itoa(port), "-datadir", filepath.Join(work, "master"))
	if err != nil {
		return err
	}
	client := cluster.NewClient([]string{master}, "")
	if err := poll(ctx, 30*time.Second, 50*time.Millisecond, "the master to lead", func() bool {
		ms, err := client.MasterList(ctx)
		return err == nil && len(ms) > 0 && ms[0].State == "leader"
	}); err != nil {
		return fmt.Errorf("%w (log: %s)", err, mlog)
	}
	for i := range workers {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		if _, wlog, err := b.daemon(ctx, fmt.Sprintf("worker%d", i), "worker", "-ip", ip, "-datadir", filepath.Join(work, fmt.Sprintf("worker%d", i))); err != nil {
			return fmt.Errorf("%w (log: %s)", err, wlog)
		}
	}
	if err := poll(ctx, time.Minute, 100*time.Millisecond, fmt.Sprintf("%d workers to register", workers), func() bool {
		ws, err := client.Workers(ctx)
		alive := 0
		for _, w := range ws {
			if w.Alive && w.Gossip == "alive" {
				alive++
			}
		}
		return err == nil && alive == workers
	}); err != nil {
		return fmt.Errorf("%w (logs in %s)", err, work)
	}
	fmt.Printf("\n## Submit -> running at scale (scripts/bench/scale)\n\n")
	fmt.Printf("- 1 master, %d workers (real processes on 127.0.0.1-%d), unpinned executors of `/bin/sleep 1000`; bare: a Go loop of exec.Cmd.Start of `sleep 1000`\n", workers, workers)
	fmt.Printf("- load average at the start: %s\n\n", procstat.LoadAvg())
	fmt.Println("| executors | gear: submit -> all RUNNING | bare fork/exec | gear / bare | gear - bare | leader CPU (steady) | leader RSS | target | result |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, n := range ns {
		bare, err := bareStart(ctx, n)
		if err != nil {
			return fmt.Errorf("bare %d: %w", n, err)
		}
		took, id, err := b.submit(ctx, client, bundle, n)
		if err != nil {
			return fmt.Errorf("gear %d: %w (logs in %s)", n, err, work)
		}
		c0, t0 := procstat.CPU(mp.Process.Pid), time.Now()
		time.Sleep(steady) // a measurement window, not a wait for a condition
		cpu := float64(procstat.CPU(mp.Process.Pid)-c0) / float64(time.Since(t0))
		rss := procstat.RSS(mp.Process.Pid)
		if err := client.Kill(ctx, id); err != nil {
			return err
		}
		if err := poll(ctx, 5*time.Minute, 200*time.Millisecond, "the executors to stop", func() bool {
			a, err := client.App(ctx, id)
			return err == nil && running(a) == 0
		}); err != nil {
			return err
		}
		target, ok := "", false
		switch {
		case n >= 10000:
			target, ok = "<= 1.5x bare", took.Seconds() <= 1.5*bare.Seconds()
		default:
			target, ok = "<= bare + 0.5 s", took <= bare+500*time.Millisecond
		}
		verdict := "MISS"
		if ok {
			verdict = "PASS"
		}
		fmt.Printf("| %d | %s | %s | %.2fx | %s | %.0f %% | %.1f MiB | %s | %s |\n", n, secs(took), secs(bare), took.Seconds()/bare.Seconds(), secs(took-bare), cpu*100, float64(rss)/(1<<20), target, verdict)
	}
	fmt.Printf("\n- load average at the end: %s\n", procstat.LoadAvg())
	return nil
}

// submit runs `gear app submit -executors n` and waits until all n
// executors are RUNNING; it returns the time from the CLI's start.
func (b *bench) submit(ctx context.Context, client *cluster.Client, bundle string, n int) (time.Duration, string, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, b.gear, "app", "submit", bundle, "-executors", strconv.Itoa(n), "-quiet")
	cmd.Env = b.env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, "", fmt.Errorf("gear app submit: %v: %s", err, ee.Stderr)
		}
		return 0, "", err
	}
	id := strings.TrimSpace(string(out))
	var end time.Time
	err = poll(ctx, 10*time.Minute, 20*time.Millisecond, fmt.Sprintf("%d executors RUNNING", n), func() bool {
		a, err := client.App(ctx, id)
		if err == nil && running(a) == n {
			end = time.Now()
			return true
		}
		return false
	})
	return end.Sub(start), id, err
}

func running(a *cluster.App) int {
	k := 0
	for _, e := range a.Executors {
		if e.State == cluster.Running {
			k++
		}
	}
	return k
}

// bareStart fork/execs n `sleep 1000` and returns how long starting them
// all took; it then kills and reaps them.
func bareStart(ctx context.Context, n int) (time.Duration, error) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return 0, err
	}
	cmds := make([]*exec.Cmd, 0, n)
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	}()
	start := time.Now()
	for range n {
		c := exec.CommandContext(ctx, sleep, "1000")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return 0, err
		}
		cmds = append(cmds, c)
	}
	return time.Since(start), nil
}

func (b *bench) daemon(ctx context.Context, name string, args ...string) (*exec.Cmd, string, error) {
	logPath := filepath.Join(b.work, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(b.gear, args...)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", err
	}
	f.Close()
	b.procs = append(b.procs, cmd)
	return cmd, logPath, nil
}

// stopAll stops the daemons (SIGTERM: a worker stops its executors), then
// kills whatever is left of their process groups.
func (b *bench) stopAll() {
	for _, p := range b.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for _, p := range b.procs {
			_ = p.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		for _, p := range b.procs {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		}
		<-done
	}
}

func writeBundle(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	manifest := []byte("name = \"sleeper\"\nprocesses { sleep { command = [\"/bin/sleep\", \"1000\"], instances = 1 } }\n")
	if err := tw.WriteHeader(&tar.Header{Name: "gear-app.conf", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(manifest); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func poll(ctx context.Context, timeout, every time.Duration, what string, cond func() bool) error {
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

func freePort(ip string) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
