// Command restart benchmarks how fast a killed server comes back: a small
// TCP server is kill -9ed and the time until its port accepts again (served
// by a new pid) is measured under procs.Supervisor, runit and PM2, against a
// baseline of a bare fork/exec until first accept. It then shows how each
// handles a program that exits at once (when, if ever, it gives up) and one
// that fails for 10 s and then works (who rides it out).
//
// Run from the repository root: go run ./scripts/bench/restart [-rounds 20]
// [-json FILE]; -json writes every kill -9 -> served-again sample (seconds,
// per system) for scripts/bench/plot (docs/bench-restart.png).
// runit (runsv) and PM2 are used when installed (apt-get install -y runit;
// npm i -g pm2), and skipped with a note otherwise.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/procs"
)

var (
	rounds  = flag.Int("rounds", 20, "kill -9 rounds per supervisor")
	uptime  = flag.Duration("uptime", 1200*time.Millisecond, "how long the server runs before each kill (above the supervisors' min uptime of 1s, so each restart follows a healthy run)")
	observe = flag.Duration("observe", 40*time.Second, "how long the crash-loop scenarios are watched")
	noLoop  = flag.Bool("no-crashloop", false, "skip the crash-loop scenarios")
	jsonOut = flag.String("json", "", "also write the samples as JSON to this file (for scripts/bench/plot)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench restart:", err)
		os.Exit(1)
	}
}

// system is one way of keeping the server running.
type system struct {
	name  string
	key   string // in the -json output
	start func(ctx context.Context, args []string) (stop func(), err error)
}

func run() error {
	tmp, err := os.MkdirTemp("", "gear-bench-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "tcpserver")
	build := exec.Command("go", "build", "-o", bin, "github.com/gear-run/gear/scripts/bench/restart/tcpserver")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build tcpserver: %v\n%s", err, out)
	}
	cpus, err := procs.AllowedCPUs()
	if err != nil {
		return err
	}
	core := cpus[len(cpus)-1]

	systems := []system{
		{"procs.Supervisor (cpu " + strconv.Itoa(core) + ")", "gear", func(ctx context.Context, args []string) (func(), error) {
			return startSupervisor(ctx, tmp, bin, args, core)
		}},
	}
	if _, err := exec.LookPath("runsv"); err == nil {
		systems = append(systems, system{"runit (runsv)", "runit", func(ctx context.Context, args []string) (func(), error) {
			return startRunit(tmp, bin, args)
		}})
	} else {
		fmt.Println("note: runit not installed (apt-get install -y runit): skipped")
	}
	if _, err := exec.LookPath("pm2"); err == nil {
		systems = append(systems, system{"PM2", "pm2", func(ctx context.Context, args []string) (func(), error) {
			return startPM2(tmp, bin, args)
		}})
	} else {
		fmt.Println("note: pm2 not installed (npm i -g pm2): skipped")
	}

	fmt.Printf("restart after kill -9: %d rounds, interleaved across systems in a rotating order, %v uptime before each kill, %d cpus\n", *rounds, *uptime, len(cpus))
	results, err := measureInterleaved(bin, systems)
	if err != nil {
		return err
	}
	bare := results[0]
	fmt.Printf("%-28s %10s %10s %10s %12s %10s\n", "", "min", "median", "p90", "median/bare", "min/bare")
	report("bare fork/exec -> accept", bare, bare)
	for i, s := range systems {
		report(s.name, results[i+1], bare)
	}
	if *jsonOut != "" {
		if err := writeSamples(*jsonOut, systems, results); err != nil {
			return err
		}
	}
	if !*noLoop {
		crashLoops(systems, tmp, bin)
	}
	return nil
}

// samples is the -json output: kill -9 -> served again, in seconds, per
// system ("bare" is fork/exec -> first accept), from the same rounds.
type samples struct {
	Rounds  int                  `json:"rounds"`
	Uptime  float64              `json:"uptime_s"`
	Seconds map[string][]float64 `json:"seconds"`
	Names   map[string]string    `json:"names"`
}

func writeSamples(path string, systems []system, results [][]time.Duration) error {
	out := samples{Rounds: *rounds, Uptime: uptime.Seconds(), Seconds: map[string][]float64{}, Names: map[string]string{"bare": "bare fork/exec -> accept"}}
	add := func(key string, ds []time.Duration) {
		for _, d := range ds {
			out.Seconds[key] = append(out.Seconds[key], d.Seconds())
		}
	}
	add("bare", results[0])
	for i, s := range systems {
		add(s.key, results[i+1])
		out.Names[s.key] = s.name
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("-json: %w", err)
	}
	fmt.Println("samples written to", path)
	return nil
}

func report(name string, d, bare []time.Duration) {
	if len(d) == 0 {
		fmt.Printf("%-28s no data\n", name)
		return
	}
	fmt.Printf("%-28s %10s %10s %10s %11.2fx %9.2fx\n", name, ms(pct(d, 0)), ms(pct(d, 50)), ms(pct(d, 90)),
		float64(pct(d, 50))/float64(pct(bare, 50)), float64(pct(d, 0))/float64(pct(bare, 0)))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// probe returns the pid serving port, or 0.
func probe(port int) int {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// waitServed polls until port is served by a pid other than notPid.
func waitServed(port, notPid int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if pid := probe(port); pid != 0 && pid != notPid {
			return pid, nil
		}
		time.Sleep(200 * time.Microsecond)
	}
	return 0, fmt.Errorf("port %d not served by a new process within %v", port, timeout)
}

// measureInterleaved measures, in every round, one bare start and one
// kill -9 -> served-again under each system, so that the load of this
// shared machine weighs on all of them alike. results[0] is bare, then one
// slice per system; a system that errs is dropped with a note.
func measureInterleaved(bin string, systems []system) ([][]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type running struct {
		port, pid int
		stop      func()
		failed    bool
	}
	rs := make([]*running, len(systems))
	for i, s := range systems {
		r := &running{port: freePort()}
		rs[i] = r
		stop, err := s.start(ctx, []string{"-port", strconv.Itoa(r.port)})
		if err != nil {
			fmt.Printf("note: %s: %v: skipped\n", s.name, err)
			r.failed = true
			continue
		}
		r.stop = stop
		defer stop()
		if r.pid, err = waitServed(r.port, 0, 30*time.Second); err != nil {
			fmt.Printf("note: %s: %v: skipped\n", s.name, err)
			r.failed = true
		}
	}
	results := make([][]time.Duration, len(systems)+1)
	for round := range *rounds {
		time.Sleep(*uptime) // a healthy run before the kills, on purpose
		// Rotate the order every round: nobody always goes first.
		for k := range len(systems) + 1 {
			j := (k + round) % (len(systems) + 1)
			if j == 0 {
				d, err := bareOnce(bin)
				if err != nil {
					return nil, fmt.Errorf("bare: %w", err)
				}
				results[0] = append(results[0], d)
				continue
			}
			i, r := j-1, rs[j-1]
			if r.failed {
				continue
			}
			t0 := time.Now()
			if err := syscall.Kill(r.pid, syscall.SIGKILL); err != nil {
				return nil, fmt.Errorf("%s: kill %d: %w", systems[i].name, r.pid, err)
			}
			pid, err := waitServed(r.port, r.pid, 30*time.Second)
			if err != nil {
				fmt.Printf("note: %s: %v: dropped\n", systems[i].name, err)
				r.failed = true
				continue
			}
			results[j] = append(results[j], time.Since(t0))
			r.pid = pid
		}
	}
	return results, nil
}

// bareOnce times fork/exec of the server until its first accept.
func bareOnce(bin string) (time.Duration, error) {
	port := freePort()
	t0 := time.Now()
	cmd := exec.Command(bin, "-port", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	_, err := waitServed(port, 0, 10*time.Second)
	d := time.Since(t0)
	cmd.Process.Kill()
	cmd.Wait()
	return d, err
}

func startSupervisor(ctx context.Context, tmp, bin string, args []string, core int) (func(), error) {
	id := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	spec := procs.Spec{
		ID: id, Command: append([]string{bin}, args...), CPUs: []int{core},
		LogDir: filepath.Join(tmp, "log"), PidDir: filepath.Join(tmp, "run"), StopTimeout: 5 * time.Second,
	}
	s := procs.NewSupervisor(spec, procs.DefaultPolicy(), procs.SupervisorOptions{Logger: slog.New(slog.DiscardHandler)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Stop(sctx, true)
		<-done
	}, nil
}

func startRunit(tmp, bin string, args []string) (func(), error) {
	dir, err := os.MkdirTemp(tmp, "runit-")
	if err != nil {
		return nil, err
	}
	script := "#!/bin/sh\nexec " + shellQuote(append([]string{bin}, args...)) + " 2>/dev/null\n"
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte(script), 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("runsv", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		// "d": take the service down; "x": exit once it is down.
		if f, err := os.OpenFile(filepath.Join(dir, "supervise", "control"), os.O_WRONLY, 0); err == nil {
			f.WriteString("dx")
			f.Close()
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}, nil
}

func startPM2(tmp, bin string, args []string) (func(), error) {
	home, err := os.MkdirTemp(tmp, "pm2-")
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "PM2_HOME="+home)
	pm2 := func(a ...string) error {
		c := exec.Command("pm2", a...)
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("pm2 %s: %v: %s", strings.Join(a, " "), err, out)
		}
		return nil
	}
	name := filepath.Base(home)
	if err := pm2(append([]string{"start", bin, "--name", name, "--interpreter", "none", "--"}, args...)...); err != nil {
		pm2("kill")
		return nil, err
	}
	return func() { pm2("kill") }, nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// crashLoops runs both crash-loop scenarios under every system at once and
// reports, from the servers' own start records, how each behaved.
func crashLoops(systems []system, tmp, bin string) {
	fmt.Printf("\ncrash loops, watched for %v (defaults: gear 100ms..5s backoff, min uptime 1s, 10 crashes/60s; runit: 1s pause; PM2: min_uptime 1s, max_restarts 16)\n", *observe)
	failFor := 10 * time.Second
	t0 := time.Now()
	failUntil := t0.Add(failFor).UnixMilli()
	type result struct {
		name, scenario string
		startsFile     string
		port           int
		serving        bool
		err            error
	}
	var (
		mu      sync.Mutex
		results []*result
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, s := range systems {
		for _, sc := range []string{"exits-at-once", "fails-10s-then-works"} {
			r := &result{name: s.name, scenario: sc, startsFile: filepath.Join(tmp, fmt.Sprintf("starts-%d-%s", i, sc)), port: freePort()}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
			args := []string{"-port", strconv.Itoa(r.port), "-starts", r.startsFile}
			if sc == "exits-at-once" {
				args = append(args, "-crash")
			} else {
				args = append(args, "-fail-until", strconv.FormatInt(failUntil, 10))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				stop, err := s.start(ctx, args)
				if err != nil {
					r.err = err
					return
				}
				time.Sleep(*observe) // the observation period, on purpose
				r.serving = probe(r.port) != 0
				stop()
			}()
		}
	}
	wg.Wait()
	fmt.Printf("%-28s %-22s %7s %12s %s\n", "", "scenario", "starts", "last start", "outcome")
	for _, r := range results {
		if r.err != nil {
			fmt.Printf("%-28s %-22s error: %v\n", r.name, r.scenario, r.err)
			continue
		}
		starts := readStarts(r.startsFile)
		last := time.Duration(0)
		if len(starts) > 0 {
			last = starts[len(starts)-1].Sub(t0)
		}
		var outcome string
		switch {
		case r.scenario == "exits-at-once" && *observe-last > 6*time.Second:
			outcome = fmt.Sprintf("gave up after %.1fs", last.Seconds())
		case r.scenario == "exits-at-once":
			outcome = "still restarting at the end"
		case r.serving:
			outcome = fmt.Sprintf("rode it out: serving from %.1fs", last.Seconds())
		default:
			outcome = "gave up before the program recovered"
		}
		fmt.Printf("%-28s %-22s %7d %11.1fs %s\n", r.name, r.scenario, len(starts), last.Seconds(), outcome)
	}
}

func readStarts(path string) []time.Time {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []time.Time
	for _, l := range strings.Fields(string(b)) {
		if ms, err := strconv.ParseInt(l, 10, 64); err == nil {
			out = append(out, time.UnixMilli(ms))
		}
	}
	return out
}
