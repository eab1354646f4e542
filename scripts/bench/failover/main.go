// Command failover benchmarks master failover: how long a 3-master gear
// group takes from kill -9 of its leader until a surviving master accepts
// a committed write, measured in the same run against a 3-member etcd
// cluster (default timing) as the baseline, rounds of both interleaved so
// that the load of a shared machine weighs on both alike. It also pauses
// the leader with SIGSTOP (0.5 s, 1 s, 2 s) and counts the elections that
// causes, and measures how long a fresh group takes to elect its first
// leader. It prints Markdown tables, ratios gear/etcd and PASS/MISS
// against gear's targets (failover median <= 1.2 s, p90 <= 1.4 s, no
// election after 0.5 s and 1 s pauses); the exit status says only whether
// the benchmark itself ran.
//
// It is not a test: it asserts nothing, and it is not a load test (one
// write at a time, no clients). Network partitions are not covered (see
// test/ for those).
//
// Run from the repository root:
//
//	go run ./scripts/bench/failover            # ~20 kill rounds, 5 pause rounds each
//	go run ./scripts/bench/failover -quick     # 3 rounds, a smoke run
//
// etcd is installed with apt-get (etcd-server, etcd-client) when missing.
// Every process and temp dir is removed at the end, also on Ctrl-C.
package main

import (
	"github.com/gear-run/gear/scripts/bench/internal/procstat"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the benchmark's command line.
type config struct {
	rounds      int
	pauseRounds int
	pauses      []time.Duration
	observe     time.Duration
	startups    int
	gearBin     string
	install     bool
	keep        bool
	timeout     time.Duration
	md          string
	jsonOut     string
	verbose     bool
	netRounds   int
	muteObserve time.Duration
	wire        bool // -cut wire: one-way faults lose packets in the bridge
	flapRounds  int
	coldOnly    bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	fs.IntVar(&c.rounds, "rounds", 20, "kill -9 rounds per system")
	fs.IntVar(&c.pauseRounds, "pause-rounds", 5, "SIGSTOP rounds per system and pause length")
	pauses := fs.String("pauses", "500ms,1s,2s", "SIGSTOP lengths, comma-separated")
	fs.DurationVar(&c.observe, "observe", 3*time.Second, "how long elections are watched for after SIGCONT")
	fs.IntVar(&c.startups, "startups", 3, "cold starts of a fresh group per system (time to first leader)")
	fs.StringVar(&c.gearBin, "gear", "", "gear binary (default: go build the module in the current directory)")
	fs.BoolVar(&c.install, "install", true, "apt-get install etcd-server etcd-client when etcd is missing")
	fs.BoolVar(&c.keep, "keep", false, "keep the temp dir (member logs, data dirs) for a post-mortem")
	fs.DurationVar(&c.timeout, "timeout", 14*time.Minute, "give up after this long (partial results are printed)")
	fs.StringVar(&c.md, "md", "", "also write the result tables to this Markdown file")
	fs.StringVar(&c.jsonOut, "json", "", "also write every sample (seconds) to this JSON file, for scripts/bench/plot")
	fs.BoolVar(&c.verbose, "v", false, "log every round")
	fs.IntVar(&c.netRounds, "net-rounds", 8, "network fault rounds per system and fault (host loss, leader mute, one follower mute), members in namespaces; needs root; 0 skips")
	fs.IntVar(&c.flapRounds, "flap-rounds", 3, "flapping-worker rounds (gear only, with the network faults)")
	fs.DurationVar(&c.muteObserve, "mute-observe", 5*time.Second, "how long one follower stays unable to reach the leader")
	cut := fs.String("cut", "route", "how one-way faults cut: route (blackhole routes in the sender's namespace: its sends fail locally) or wire (the packets are lost in the bridge, as on a network)")
	fs.BoolVar(&c.coldOnly, "cold-only", false, "only the cold starts (-startups of them per system), no kill or pause rounds")
	quick := fs.Bool("quick", false, "smoke run: 3 kill rounds, 1 pause round per length, 1 cold start")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch *cut {
	case "route":
	case "wire":
		c.wire = true
	default:
		return c, fmt.Errorf("-cut %q: want route or wire", *cut)
	}
	if *quick {
		c.rounds, c.pauseRounds, c.startups, c.netRounds, c.flapRounds = 3, 1, 1, 2, 1
	}
	for _, p := range strings.Split(*pauses, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("-pauses: %q is not a positive duration (e.g. 500ms,1s,2s)", p)
		}
		c.pauses = append(c.pauses, d)
	}
	if c.rounds < 1 || c.pauseRounds < 0 || c.startups < 0 {
		return c, errors.New("-rounds must be >= 1, -pause-rounds and -startups >= 0")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench failover:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, log, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench failover:", err)
		os.Exit(1)
	}
}

// system is one consensus system under test.
type system struct {
	name string
	mk   func(dir string) (backend, error)
}

func run(ctx context.Context, cfg config, log *slog.Logger, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "gear-bench-failover-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			log.Info("kept the temp dir", "dir", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	gearBin := cfg.gearBin
	if gearBin == "" {
		gearBin = filepath.Join(tmp, "bin", "gear")
		log.Info("building gear", "out", gearBin)
		build := exec.CommandContext(ctx, "go", "build", "-o", gearBin, "github.com/gear-run/gear")
		if b, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build gear (run from the repository root, or pass -gear PATH): %w\n%s", err, b)
		}
	}
	etcdBin, err := ensureEtcd(ctx, cfg.install, log)
	if err != nil {
		return err
	}
	client := newHTTPClient()
	defer client.CloseIdleConnections()
	systems := []system{
		{"gear", func(dir string) (backend, error) { return newGear(gearBin, dir, client) }},
		{"etcd", func(dir string) (backend, error) { return newEtcd(etcdBin, dir, client) }},
	}
	res := newResults(systems, cfg.pauses)
	res.env = environment(ctx, etcdBin)
	err = measure(ctx, cfg, tmp, systems, res, log)
	if err == nil && cfg.netRounds > 0 && !cfg.coldOnly {
		err = measureNet(ctx, cfg, tmp, gearBin, etcdBin, res, log)
	}
	res.env = append(res.env, "load average at the end: "+procstat.LoadAvg())
	res.write(out, cfg)
	if cfg.jsonOut != "" {
		if jerr := res.writeJSON(cfg.jsonOut); jerr != nil {
			err = errors.Join(err, jerr)
		}
	}
	if cfg.md != "" {
		f, ferr := os.Create(cfg.md)
		if ferr != nil {
			return errors.Join(err, fmt.Errorf("write -md file: %w", ferr))
		}
		res.write(f, cfg)
		if ferr := f.Close(); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	return err
}

// measure runs every round, filling res as it goes so that partial results
// survive an error or Ctrl-C.
func measure(ctx context.Context, cfg config, tmp string, systems []system, res *results, log *slog.Logger) error {
	// order rotates each round so that neither system always goes first.
	order := func(round int) []int {
		o := make([]int, len(systems))
		for k := range o {
			o[k] = (k + round) % len(systems)
		}
		return o
	}

	for r := range cfg.startups {
		for _, k := range order(r) {
			s := systems[k]
			sr, err := coldStart(ctx, s, filepath.Join(tmp, fmt.Sprintf("start-%s-%d", s.name, r)), log)
			if err != nil {
				return fmt.Errorf("cold start %d: %w", r, err)
			}
			log.Info("cold start", "system", s.name, "round", r, "leader", sr.Leader, "first_write", sr.Write)
			res.startLeader[s.name] = append(res.startLeader[s.name], sr.Leader)
			res.startWrite[s.name] = append(res.startWrite[s.name], sr.Write)
		}
	}

	if cfg.coldOnly {
		return nil
	}
	groups := make([]*group, len(systems))
	defer func() {
		for _, g := range groups {
			if g != nil {
				g.close()
			}
		}
	}()
	for k, s := range systems {
		dir := filepath.Join(tmp, s.name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		b, err := s.mk(dir)
		if err != nil {
			return err
		}
		groups[k] = newGroup(b, dir, log)
		if err := groups[k].startAll(); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if _, _, err := g.waitHealthy(ctx, healthyLimit); err != nil {
			return err
		}
	}

	for r := range cfg.rounds {
		for _, k := range order(r) {
			s := systems[k]
			kr, err := killRound(ctx, groups[k])
			if err != nil {
				return fmt.Errorf("%s kill round %d: %w", s.name, r, err)
			}
			if kr.Miss != nil {
				log.Warn("kill round without failover", "system", s.name, "round", r, "err", kr.Miss)
				res.misses[s.name]++
			} else {
				res.failover[s.name] = append(res.failover[s.name], kr.Failover)
			}
			res.recovery[s.name] = append(res.recovery[s.name], kr.Recovery)
			lvl := slog.LevelDebug
			if s.name == "gear" && kr.Failover > targetMedian {
				lvl = slog.LevelWarn // worth a look at the member logs (-keep)
			}
			log.Log(ctx, lvl, "kill round", "system", s.name, "round", r, "failover", kr.Failover, "recovery", kr.Recovery,
				"attempts", kr.Writes.Attempts, "peak_in_flight", kr.Writes.PeakInFlight, "last_refusal", kr.Writes.LastErr)
			if kr.Writes.PeakInFlight >= maxInFlight {
				log.Warn("write probes were throttled: the measured failover may be late by up to the write timeout", "system", s.name, "round", r, "timeout", writeTimeout)
			}
		}
		log.Info("kill rounds", "done", r+1, "of", cfg.rounds)
	}

	for _, p := range cfg.pauses {
		for r := range cfg.pauseRounds {
			for _, k := range order(r) {
				s := systems[k]
				pr, err := pauseRound(ctx, groups[k], p, cfg.observe)
				if err != nil {
					return fmt.Errorf("%s pause round %v/%d: %w", s.name, p, r, err)
				}
				res.pause[s.name][p] = append(res.pause[s.name][p], pr)
				log.Debug("pause round", "system", s.name, "pause", p, "round", r, "term_bumps", pr.TermBumps, "leader_moved", pr.LeaderMoved)
			}
		}
		log.Info("pause rounds", "pause", p, "rounds", cfg.pauseRounds)
	}
	return nil
}

// coldStart starts a fresh group in dir, measures it and removes it.
func coldStart(ctx context.Context, s system, dir string, log *slog.Logger) (startupResult, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return startupResult{}, err
	}
	defer os.RemoveAll(dir)
	b, err := s.mk(dir)
	if err != nil {
		return startupResult{}, err
	}
	g := newGroup(b, dir, log)
	defer g.close()
	return startupRound(ctx, g)
}

// results collects every measurement.
type results struct {
	systems     []string
	pauses      []time.Duration
	env         []string
	failover    map[string][]time.Duration
	misses      map[string]int
	recovery    map[string][]time.Duration
	pause       map[string]map[time.Duration][]pauseResult
	startLeader map[string][]time.Duration
	startWrite  map[string][]time.Duration
	// network faults (netfaults.go), by fault then system
	netFailover map[string]map[string][]time.Duration
	netMisses   map[string]map[string]int
	mute        map[string][]pauseResult
	flap        []flapResult
	netSkipped  string
}

func newResults(systems []system, pauses []time.Duration) *results {
	r := &results{
		pauses: pauses, failover: map[string][]time.Duration{}, misses: map[string]int{},
		recovery: map[string][]time.Duration{}, pause: map[string]map[time.Duration][]pauseResult{},
		startLeader: map[string][]time.Duration{}, startWrite: map[string][]time.Duration{},
		netFailover: map[string]map[string][]time.Duration{}, netMisses: map[string]map[string]int{}, mute: map[string][]pauseResult{},
	}
	for _, f := range netFaults {
		r.netFailover[f], r.netMisses[f] = map[string][]time.Duration{}, map[string]int{}
	}
	for _, s := range systems {
		r.systems = append(r.systems, s.name)
		r.pause[s.name] = map[time.Duration][]pauseResult{}
	}
	return r
}

// write prints the report as Markdown.
func (r *results) write(w io.Writer, cfg config) {
	fmt.Fprintf(w, "\n## Master failover: gear vs etcd\n\n")
	for _, e := range r.env {
		fmt.Fprintf(w, "- %s\n", e)
	}
	if cfg.coldOnly {
		r.writeColdStart(w, cfg)
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "\n### kill -9 of the leader -> first committed write accepted by a survivor\n\n")
	fmt.Fprintf(w, "%d rounds per system, interleaved; writes launched every %v to the survivors in turn (each with a %v timeout).\n\n", cfg.rounds, writeEvery, writeTimeout)
	var rows [][]string
	sums := map[string]summary{}
	for _, s := range r.systems {
		sm := summarize(r.failover[s])
		sums[s] = sm
		rows = append(rows, []string{s, strconv.Itoa(sm.N), secs(sm.Min), secs(sm.Median), secs(sm.P90), secs(sm.Max),
			strconv.Itoa(r.misses[s]), secs(summarize(r.recovery[s]).Median)})
	}
	g, e := sums["gear"], sums["etcd"]
	rows = append(rows, []string{"gear/etcd", "", ratio(g.Min, e.Min), ratio(g.Median, e.Median), ratio(g.P90, e.P90), ratio(g.Max, e.Max), "", ""})
	table(w, []string{"system", "rounds", "min", "median", "p90", "max", "no failover", "rejoin median"}, rows)
	fmt.Fprintf(w, "\n(rejoin: restart of the killed member until all %d are up and agree on the leader)\n", size)

	if len(r.pauses) > 0 && cfg.pauseRounds > 0 {
		fmt.Fprintf(w, "\n### SIGSTOP of the leader, then SIGCONT; elections seen within %v after\n\n", cfg.observe)
		rows = nil
		for _, p := range r.pauses {
			for _, s := range r.systems {
				prs := r.pause[s][p]
				var disrupted, moved int
				var bumps uint64
				for _, pr := range prs {
					if pr.disrupted() {
						disrupted++
					}
					if pr.LeaderMoved {
						moved++
					}
					bumps += pr.TermBumps
				}
				rows = append(rows, []string{p.String(), s, strconv.Itoa(len(prs)), strconv.Itoa(disrupted), strconv.FormatUint(bumps, 10), strconv.Itoa(moved)})
			}
		}
		table(w, []string{"pause", "system", "rounds", "rounds with an election", "term increases", "rounds where the leader moved"}, rows)
	}

	r.writeColdStart(w, cfg)

	r.writeNet(w, cfg)

	fmt.Fprintf(w, "\n### gear targets\n\n")
	rows = nil
	for _, c := range checks(r.failover["gear"], r.misses["gear"], r.pause["gear"]) {
		verdict := "MISS"
		if c.Pass {
			verdict = "PASS"
		}
		rows = append(rows, []string{c.What, c.Got, verdict})
	}
	table(w, []string{"target", "measured", "result"}, rows)
	fmt.Fprintln(w)
}

// writeJSON writes the samples, in seconds, by system: what
// scripts/bench/plot draws.
func (r *results) writeJSON(path string) error {
	secs := func(m map[string][]time.Duration) map[string][]float64 {
		out := map[string][]float64{}
		for k, ds := range m {
			for _, d := range ds {
				out[k] = append(out[k], d.Seconds())
			}
		}
		return out
	}
	b, err := json.MarshalIndent(map[string]any{
		"failover":         secs(r.failover),
		"cold_start_write": secs(r.startWrite),
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// writeColdStart prints the cold-start table and its target: a fresh gear
// group accepts its first write no later than etcd's median, same run.
func (r *results) writeColdStart(w io.Writer, cfg config) {
	if cfg.startups <= 0 {
		return
	}
	fmt.Fprintf(w, "\n### Cold start of a fresh 3-member group (all started at once)\n\n")
	var rows [][]string
	for _, s := range r.systems {
		l, wr := summarize(r.startLeader[s]), summarize(r.startWrite[s])
		rows = append(rows, []string{s, strconv.Itoa(l.N), secs(l.Min), secs(l.Median), secs(l.Max), secs(wr.Min), secs(wr.Median), secs(wr.Max)})
	}
	g, e := summarize(r.startWrite["gear"]), summarize(r.startWrite["etcd"])
	rows = append(rows, []string{"gear/etcd", "", "", "", "", ratio(g.Min, e.Min), ratio(g.Median, e.Median), ratio(g.Max, e.Max)})
	table(w, []string{"system", "runs", "first leader min", "median", "max", "first write min", "median", "max"}, rows)
	verdict := "MISS"
	if g.N > 0 && e.N > 0 && g.Median <= e.Median {
		verdict = "PASS"
	}
	fmt.Fprintf(w, "\n| target | measured | result |\n| --- | --- | --- |\n| cold start: first write median <= etcd's (%s) | %s | %s |\n", secs(e.Median), secs(g.Median), verdict)
}

// environment describes the machine and versions for the report.
func environment(ctx context.Context, etcdBin string) []string {
	ev := "?"
	if b, err := exec.CommandContext(ctx, etcdBin, "--version").Output(); err == nil {
		ev = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return []string{
		fmt.Sprintf("%s/%s, %d CPUs, %s; gear failover timeout 6s (default); %s, default timing (heartbeat 100ms, election 1000ms)", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), ev),
		"load average at the start: " + procstat.LoadAvg(),
	}
}
