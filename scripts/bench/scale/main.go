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
//	go run ./scripts/bench/scale -workers 100 -executors 1000
//	go run ./scripts/bench/scale -executors 200,1000,10000 -json .build/bench/scale.json  # for scripts/bench/plot
//
// Beside the total it splits the time into phases, from the app as the
// API shows it (polled) and the start times the workers report: the CLI
// returning, every executor placed, the first and the last process
// forked, every executor RUNNING in the replicated state. It also reads
// the leader's /metrics while all run steadily: heartbeats and their
// body bytes per worker per second (gear_heartbeats_total,
// gear_heartbeat_bytes_total). And it prints the CPU each start costs
// its starter: the workers' CPU from the submit until all RUNNING per
// executor, against the bare loop's own CPU per fork/exec; on a shared
// machine that moves less than the wall times.
//
// -pprof DIR builds gear with -tags gearpprof (pprof_debug.go: a pprof
// listener whose address the daemon writes to $GEAR_PPROF_DIR) and saves
// CPU profiles of the leader and of the first worker, taken over the
// first submit, and their goroutine dumps, to DIR.
package main

import (
	"github.com/gear-run/gear/scripts/bench/internal/ports"
	"github.com/gear-run/gear/scripts/bench/internal/procstat"

	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
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
	steady := flag.Duration("steady", 5*time.Second, "window over which the leader's CPU and the heartbeat traffic are measured while all executors run")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file (for scripts/bench/plot)")
	pprofDir := flag.String("pprof", "", "build gear with -tags gearpprof and save CPU profiles of the leader and the first worker over the first submit to this directory")
	pprofWindow := flag.Duration("pprof-window", 8*time.Second, "length of the -pprof CPU profiles")
	flag.DurationVar(&runningWait, "wait", 10*time.Minute, "how long to wait for every executor to be RUNNING before giving up")
	flag.StringVar(&keepLogs, "logs", "", "copy the daemons' logs into this directory at the end (also when a run fails)")
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
	if *workers < 1 || *workers > 250 {
		fmt.Fprintf(os.Stderr, "scale bench: -workers %d: give 1 to 250 (one loopback address 127.0.0.N each)\n", *workers)
		os.Exit(2)
	}
	if *pprofDir != "" && *gearBin != "" {
		fmt.Fprintln(os.Stderr, "scale bench: -pprof builds its own gear binary (with -tags gearpprof); leave out -gear")
		os.Exit(2)
	}
	// Interrupted (or timed out), it still stops what it started.
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, 30*time.Minute)
	defer cancel()
	results, err := run(ctx, ns, *workers, *gearBin, *steady, *pprofDir, *pprofWindow)
	if err == nil && *jsonOut != "" {
		err = writeJSON(*jsonOut, report{Workers: *workers, Load: procstat.LoadAvg(), Results: results})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale bench:", err)
		os.Exit(1)
	}
}

// runningWait and keepLogs: -wait and -logs.
var (
	runningWait time.Duration
	keepLogs    string
)

// fenceLine is what a worker logs when it fences (worker/fencing.go).
const fenceLine = "no contact with a leader: stopping every executor"

// report is the -json output.
type report struct {
	Workers int      `json:"workers"`
	Load    string   `json:"load_end"`
	Results []result `json:"results"`
}

// result is one executor count. Phase times count from the CLI's start.
type result struct {
	Executors int     `json:"executors"`
	GearS     float64 `json:"gear_s"`
	BareS     float64 `json:"bare_s"`
	// Phases: the CLI returned, every executor placed (polled), the
	// first and last process started (the workers' start times), every
	// executor RUNNING (polled).
	SubmitS    float64 `json:"submit_s"`
	PlacedS    float64 `json:"placed_s"`
	FirstForkS float64 `json:"first_fork_s"`
	LastForkS  float64 `json:"last_fork_s"`
	// Fences: how often each worker fenced (stopped every executor for
	// lack of a leader's answer) during this count, by worker log.
	Fences []int `json:"fences_per_worker"`
	// Steady: the leader while all run.
	LeaderCPU   float64 `json:"leader_cpu"` // fraction of one core
	LeaderRSS   int64   `json:"leader_rss_bytes"`
	BeatsPerS   float64 `json:"heartbeats_per_worker_per_s"`
	BeatInPerS  float64 `json:"heartbeat_bytes_received_per_worker_per_s"`
	BeatOutPerS float64 `json:"heartbeat_reply_bytes_per_worker_per_s"`
	// CPU per process started, in ms: the workers' (user+system, summed
	// over all workers, from the submit until all RUNNING; the executors'
	// own CPU is not in it) against the bare loop's (its process's
	// user+system over the loop). Less noisy than the wall times when
	// the machine is shared: what each start costs the starter.
	WorkerCPUPerStartMS float64 `json:"worker_cpu_per_start_ms"`
	BareCPUPerStartMS   float64 `json:"bare_cpu_per_start_ms"`
	// FileCreateUS is what creating one empty file cost in the work
	// dir's file system just before the submit (a probe of 200): each
	// executor creates a few (its working directory, the copies of the
	// bundle's files, its log and pid files), and on some file systems
	// that cost swings by 10x with what was deleted shortly before (see
	// docs/BENCHMARKS.md, scale).
	FileCreateUS float64 `json:"file_create_us"`
	Target       string  `json:"target"`
	Pass         bool    `json:"pass"`
	Load         string  `json:"load"`
}

type bench struct {
	work, gear string
	env        []string
	procs      []*exec.Cmd
	workers    []int // pids of the worker daemons
	master     string
}

func run(ctx context.Context, ns []int, workers int, gearBin string, steady time.Duration, pprofDir string, pprofWindow time.Duration) ([]result, error) {
	work, err := os.MkdirTemp("", "gear-bench-scale-")
	if err != nil {
		return nil, err
	}
	b := &bench{work: work}
	defer os.RemoveAll(work)
	defer b.copyLogs()
	defer b.stopAll()
	if b.gear = gearBin; b.gear == "" {
		b.gear = filepath.Join(work, "gear")
		args := []string{"build", "-o", b.gear}
		if pprofDir != "" {
			args = append(args, "-tags", "gearpprof")
		}
		if out, err := exec.CommandContext(ctx, "go", append(args, ".")...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build (run from the repository root or pass -gear): %v\n%s", err, out)
		}
	}
	bundle := filepath.Join(work, "sleep.tar.gz")
	if err := writeBundle(bundle); err != nil {
		return nil, err
	}
	port, err := ports.Free()
	if err != nil {
		return nil, err
	}
	master := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b.master = master
	conf := filepath.Join(work, "gear.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("gear.cluster.masters = [%q]\ngear.metrics.open = true\n", master)), 0o644); err != nil {
		return nil, err
	}
	b.env = append(os.Environ(), "GEAR_CONF="+conf)
	if pprofDir != "" {
		if err := os.MkdirAll(pprofDir, 0o755); err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(pprofDir)
		if err != nil {
			return nil, err
		}
		pprofDir = abs
		b.env = append(b.env, "GEAR_PPROF_DIR="+pprofDir)
	}
	mp, mlog, err := b.daemon(ctx, "master", "master", "-ip", "127.0.0.1", "-port", strconv.Itoa(port), "-datadir", filepath.Join(work, "master"))
	if err != nil {
		return nil, err
	}
	client := cluster.NewClient([]string{master}, "")
	if err := poll(ctx, 30*time.Second, 50*time.Millisecond, "the master to lead", func() bool {
		ms, err := client.MasterList(ctx)
		return err == nil && len(ms) > 0 && ms[0].State == "leader"
	}); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, mlog)
	}
	for i := range workers {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		wp, wlog, err := b.daemon(ctx, fmt.Sprintf("worker%d", i), "worker", "-ip", ip, "-datadir", filepath.Join(work, fmt.Sprintf("worker%d", i)))
		if err != nil {
			return nil, fmt.Errorf("%w (log: %s)", err, wlog)
		}
		b.workers = append(b.workers, wp.Process.Pid)
	}
	if err := poll(ctx, 2*time.Minute, 100*time.Millisecond, fmt.Sprintf("%d workers to register", workers), func() bool {
		ws, err := client.Workers(ctx)
		alive := 0
		for _, w := range ws {
			if w.Alive && w.Gossip == "alive" {
				alive++
			}
		}
		return err == nil && alive == workers
	}); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, work)
	}
	fmt.Printf("\n## Submit -> running at scale (scripts/bench/scale)\n\n")
	fmt.Printf("- 1 master, %d workers (real processes on 127.0.0.1-%d), unpinned executors of `/bin/sleep 1000`; bare: a Go loop of exec.Cmd.Start of `sleep 1000`\n", workers, workers)
	fmt.Printf("- phases, from the CLI's start: the CLI returns / all placed / first and last process started (workers' start times) / all RUNNING\n")
	fmt.Printf("- steady (over %v with all running): the leader's CPU and RSS, heartbeats and their body bytes per worker per second\n", steady)
	fmt.Printf("- CPU per start: the workers' CPU from the submit until all RUNNING (summed, executors not included) per executor, against the bare loop's own CPU per fork/exec\n")
	fmt.Printf("- file create (probe): creating one empty file in the data dirs' file system just before the submit (mean of 200)\n")
	fmt.Printf("- load average at the start: %s\n\n", procstat.LoadAvg())
	fmt.Println("| executors | gear: submit -> all RUNNING | bare fork/exec | gear / bare | gear - bare | phases (s): submitted / placed / first fork / last fork | leader CPU (steady) | leader RSS | heartbeats /s per worker | heartbeat bytes/s per worker (in / out) | CPU per start: workers / bare | file create (probe) | target | result |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	var results []result
	for i, n := range ns {
		load := procstat.LoadAvg()
		bareCPU0 := selfCPU()
		bare, err := bareStart(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("bare %d: %w", n, err)
		}
		bareCPU := selfCPU() - bareCPU0
		var profiled chan error
		if pprofDir != "" && i == 0 {
			profiled = make(chan error, 1)
			go func() { profiled <- b.profile(ctx, pprofDir, pprofWindow) }()
		}
		r0, err := createProbe(filepath.Join(work, fmt.Sprintf("fsprobe-%d", i)), 200)
		if err != nil {
			return nil, err
		}
		wcpu0 := b.workersCPU()
		fences0 := b.fences(workers)
		r, id, err := b.submit(ctx, client, bundle, n)
		fences := b.fences(workers)
		for i := range fences {
			fences[i] -= fences0[i]
		}
		r.Fences = fences
		fmt.Fprintf(os.Stderr, "scale bench: %d executors: fences per worker while starting: %v\n", n, fences)
		if err != nil {
			return nil, fmt.Errorf("gear %d: %w (fences per worker %v)", n, err, fences)
		}
		r.WorkerCPUPerStartMS = float64((b.workersCPU() - wcpu0).Microseconds()) / 1000 / float64(n)
		r.BareCPUPerStartMS = float64(bareCPU.Microseconds()) / 1000 / float64(n)
		if profiled != nil {
			if err := <-profiled; err != nil {
				return nil, fmt.Errorf("pprof: %w", err)
			}
		}
		r.BareS, r.Load = bare.Seconds(), load
		r.FileCreateUS = float64(r0.Nanoseconds()) / 1000
		c0, t0 := procstat.CPU(mp.Process.Pid), time.Now()
		m0, err := b.beatMetrics(ctx)
		if err != nil {
			return nil, err
		}
		time.Sleep(steady) // a measurement window, not a wait for a condition
		m1, err := b.beatMetrics(ctx)
		if err != nil {
			return nil, err
		}
		el := time.Since(t0).Seconds()
		r.LeaderCPU = (procstat.CPU(mp.Process.Pid) - c0).Seconds() / el
		r.LeaderRSS = procstat.RSS(mp.Process.Pid)
		perWorker := float64(workers) * el
		r.BeatsPerS = (m1.beats - m0.beats) / perWorker
		r.BeatInPerS = (m1.in - m0.in) / perWorker
		r.BeatOutPerS = (m1.out - m0.out) / perWorker
		if err := client.Kill(ctx, id); err != nil {
			return nil, err
		}
		if err := poll(ctx, 5*time.Minute, 200*time.Millisecond, "the executors to stop", func() bool {
			a, err := client.App(ctx, id)
			return err == nil && running(a) == 0
		}); err != nil {
			return nil, err
		}
		switch {
		case n >= 10000:
			r.Target, r.Pass = "<= 1.5x bare", r.GearS <= 1.5*r.BareS
		default:
			r.Target, r.Pass = "<= bare + 0.5 s", r.GearS <= r.BareS+0.5
		}
		verdict := "MISS"
		if r.Pass {
			verdict = "PASS"
		}
		fmt.Printf("| %d | %.3f s | %.3f s | %.2fx | %.3f s | %.2f / %.2f / %.2f / %.2f | %.0f %% | %.1f MiB | %.2f | %s / %s | %.2f / %.2f ms | %.0f µs | %s | %s |\n",
			n, r.GearS, r.BareS, r.GearS/r.BareS, r.GearS-r.BareS, r.SubmitS, r.PlacedS, r.FirstForkS, r.LastForkS,
			r.LeaderCPU*100, float64(r.LeaderRSS)/(1<<20), r.BeatsPerS, bytesPerS(r.BeatInPerS), bytesPerS(r.BeatOutPerS),
			r.WorkerCPUPerStartMS, r.BareCPUPerStartMS, r.FileCreateUS, r.Target, verdict)
		results = append(results, r)
	}
	fmt.Printf("\n- load average at the end: %s\n", procstat.LoadAvg())
	return results, nil
}

type beatCounters struct{ beats, in, out float64 }

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// submit runs `gear app submit -executors n` and waits until all n
// executors are RUNNING; its times count from the CLI's start.
func (b *bench) submit(ctx context.Context, client *cluster.Client, bundle string, n int) (result, string, error) {
	r := result{Executors: n}
	start := time.Now()
	cmd := exec.CommandContext(ctx, b.gear, "app", "submit", bundle, "-executors", strconv.Itoa(n), "-quiet")
	cmd.Env = b.env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return r, "", fmt.Errorf("gear app submit: %v: %s", err, ee.Stderr)
		}
		return r, "", err
	}
	r.SubmitS = time.Since(start).Seconds()
	id := strings.TrimSpace(string(out))
	// The leader's executor gauges (gear_executors{state}) are polled, not
	// the app: reading 10 000 executors as JSON every few milliseconds
	// loaded the leader the benchmark measures more than anything else.
	var end time.Time
	progress := start
	err = poll(ctx, runningWait, 20*time.Millisecond, fmt.Sprintf("%d executors RUNNING", n), func() bool {
		g, err := b.executorGauges(ctx)
		if err != nil {
			return false
		}
		now := time.Now()
		if now.Sub(progress) >= 10*time.Second {
			progress = now
			fmt.Fprintf(os.Stderr, "scale bench: %d executors, %v after the submit: %v, load %s\n", n, now.Sub(start).Round(time.Second), g, procstat.LoadAvg())
		}
		if g["PENDING"] == 0 && r.PlacedS == 0 {
			r.PlacedS = now.Sub(start).Seconds()
		}
		if g["RUNNING"] < n {
			return false
		}
		end = now
		return true
	})
	if err != nil {
		return r, id, err
	}
	r.GearS = end.Sub(start).Seconds()
	a, err := client.App(ctx, id)
	if err != nil {
		return r, id, err
	}
	var first, last time.Time
	for _, e := range a.Executors {
		if first.IsZero() || e.StartedAt.Before(first) {
			first = e.StartedAt
		}
		if e.StartedAt.After(last) {
			last = e.StartedAt
		}
	}
	r.FirstForkS, r.LastForkS = first.Sub(start).Seconds(), last.Sub(start).Seconds()
	return r, id, err
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
