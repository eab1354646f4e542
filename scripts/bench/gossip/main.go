// Command gossip benchmarks gear's membership pool at scale: 50, 100 and
// 200 memberlist members in one process over loopback, each with the
// timing pkg/gossip uses (gossip.Tune with the default failover timeout,
// 6 s: probe every 0.75 s, probe timeout 0.375 s, suspicion multiplier 1,
// gossip every 100 ms, no compression). For each size it measures
//
//   - join: members join one after another, each through a member that
//     already joined; the time until every member sees every other alive;
//   - spread: one member changes its metadata; the time until all others
//     see the change;
//   - dead: one member stops without leaving (as a crash); the time until
//     the first member declares it dead, and until all do;
//   - CPU per member while idle (the process's CPU time over a quiet
//     window, divided by the members);
//   - pause: one member frozen for 1 s (-pause) must not be declared dead;
//   - per phase, on stderr: probe failures, suspicion timeouts,
//     refutations, memberlist's handler-queue drops, the kernel's UDP
//     receive-buffer drops, the Go scheduler's latency and the CPU, which
//     say why a pool is unstable when it is.
//
// It prints a Markdown table and, with -json, writes the results for
// scripts/bench/plot. It is a benchmark: it asserts nothing, but it marks
// the target (dead detected <= 4 s at 200) PASS or MISS.
//
//	go run ./scripts/bench/gossip                 # 50,100,200 members, 3 rounds each
//	go run ./scripts/bench/gossip -sizes 50 -rounds 1
package main

import (
	"github.com/gear-run/gear/scripts/bench/internal/procstat"

	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gear-run/gear/pkg/gossip"
)

// target is the goal for a dead member at 200 members.
const target = 4 * time.Second

func main() {
	sizes := flag.String("sizes", "50,100,200", "pool sizes, comma-separated")
	rounds := flag.Int("rounds", 3, "spread and dead rounds per size (medians reported)")
	timeout := flag.Duration("failover-timeout", 6*time.Second, "gear.failover.timeout the timing derives from (6s is the default)")
	quiet := flag.Duration("cpu-window", 5*time.Second, "idle window over which CPU per member is measured")
	probe := flag.Duration("probe-interval", 0, "override gossip.Tune's probe interval (probe timeout = half of it), to try other timing")
	mult := flag.Int("suspicion-mult", 0, "override gossip.Tune's suspicion multiplier, to try other timing")
	probeTimeout := flag.Duration("probe-timeout", 0, "override the probe timeout (after -probe-interval)")
	maxMult := flag.Int("suspicion-max-mult", 0, "override SuspicionMaxTimeoutMult (Lifeguard: the suspicion starts at this many times the minimum until confirmed)")
	awareness := flag.Int("awareness-max", 0, "override AwarenessMaxMultiplier (Lifeguard: how far a member that misses acks slows its own probing)")
	compression := flag.String("compression", "", "on or off: override memberlist's message compression (default: as gossip.Tune sets it)")
	pauseFor := flag.Duration("pause", time.Second, "after the dead rounds, freeze one member this long and count who declares it dead (0: skip)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file (for scripts/bench/plot)")
	flag.Parse()
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 3 {
			fmt.Fprintf(os.Stderr, "gossip bench: -sizes: %q is not a size >= 3\n", s)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	tune = func(cfg *memberlist.Config) {
		gossip.Tune(cfg, *timeout)
		if *probe > 0 {
			cfg.ProbeInterval, cfg.ProbeTimeout = *probe, *probe/2
		}
		if *mult > 0 {
			cfg.SuspicionMult = *mult
		}
		if *probeTimeout > 0 {
			cfg.ProbeTimeout = *probeTimeout
		}
		if *maxMult > 0 {
			cfg.SuspicionMaxTimeoutMult = *maxMult
		}
		if *awareness > 0 {
			cfg.AwarenessMaxMultiplier = *awareness
		}
		switch *compression {
		case "on":
			cfg.EnableCompression = true
		case "off":
			cfg.EnableCompression = false
		}
	}
	if *compression != "" && *compression != "on" && *compression != "off" {
		fmt.Fprintf(os.Stderr, "gossip bench: -compression %q: want on or off\n", *compression)
		os.Exit(2)
	}
	pause = *pauseFor
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gossip bench:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "gossip bench:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	cfg := memberlist.DefaultLANConfig()
	tune(cfg)
	how := "gossip.Tune"
	if *probe > 0 || *mult > 0 || *probeTimeout > 0 || *maxMult > 0 || *awareness > 0 || *compression != "" {
		how = "gossip.Tune with overrides"
	}
	fmt.Printf("\n## Gossip pool at scale (in-process memberlist members on 127.0.0.1)\n\n")
	fmt.Printf("- timing: %s (failover timeout %s): probe interval %s, probe timeout %s, suspicion mult %d (suspicion timeout = mult x log10(N) x probe interval, up to %dx that until confirmed), awareness max %d, indirect checks %d, gossip interval %s, gossip nodes %d, compression %v, GOMAXPROCS %d\n",
		how, *timeout, cfg.ProbeInterval, cfg.ProbeTimeout, cfg.SuspicionMult, cfg.SuspicionMaxTimeoutMult, cfg.AwarenessMaxMultiplier, cfg.IndirectChecks, cfg.GossipInterval, cfg.GossipNodes, cfg.EnableCompression, runtime.GOMAXPROCS(0))
	fmt.Printf("- load average at the start: %s\n\n", procstat.LoadAvg())
	var results []result
	fmt.Printf("| members | join: all see all | spread a change: all (median) | dead: first detects (median) | dead: all know (median) | suspicion timeout (min) | CPU per member, idle | paused %s: declared dead by |\n", pause)
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	failed := false
	for _, n := range ns {
		r, err := runSize(n, *rounds, *quiet)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gossip bench: %d members: %v\n", n, err)
			fmt.Printf("| %d | failed: %v | | | | | | |\n", n, err)
			failed = true
			continue
		}
		results = append(results, r)
		join := secs(r.Join)
		if r.JoinNote != "" {
			join = "not converged: " + r.JoinNote
		}
		for _, note := range r.Notes {
			fmt.Fprintf(os.Stderr, "%d members: %s\n", r.N, note)
		}
		fmt.Fprintf(os.Stderr, "%d members: join %s\n%d members: idle %s\n%d members: rounds %s\n", r.N, r.JoinDiag, r.N, r.IdleDiag, r.N, r.RoundsDiag)
		paused := "-"
		if pause > 0 {
			paused = fmt.Sprintf("%d (suspected %d times)", r.PauseDead, r.PauseSuspects)
		}
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %.2f %% | %s |\n", r.N, join, secs(median(r.Spread)), secs(median(r.DeadFirst)), secs(median(r.DeadAll)), secs(r.SuspicionMin), r.CPUPerMember*100, paused)
	}
	for _, r := range results {
		if r.N == 200 {
			v := "MISS"
			if median(r.DeadFirst) <= target && r.JoinNote == "" && len(r.DeadAll) == len(r.DeadFirst) && r.PauseDead == 0 {
				v = "PASS"
			}
			fmt.Printf("\n| target | measured | result |\n| --- | --- | --- |\n| dead member detected <= %s at 200 | %s (first), %s (all) | %s |\n", secs(target), secs(median(r.DeadFirst)), secs(median(r.DeadAll)), v)
		}
	}
	fmt.Printf("\n- load average at the end: %s\n", procstat.LoadAvg())
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gossip bench:", err)
			os.Exit(1)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// tune applies the timing under test to a member's config.
var tune func(cfg *memberlist.Config)

// pause is how long the pause round freezes a member (0: no pause round).
var pause time.Duration

// result is one pool size's measurements.
type result struct {
	N            int             `json:"members"`
	Join         time.Duration   `json:"join_ns"`
	JoinNote     string          `json:"join_note,omitempty"` // set when the join did not converge
	Notes        []string        `json:"notes,omitempty"`     // rounds that did not reach every member
	Spread       []time.Duration `json:"spread_ns"`
	DeadFirst    []time.Duration `json:"dead_first_ns"`
	DeadAll      []time.Duration `json:"dead_all_ns"`
	SuspicionMin time.Duration   `json:"suspicion_min_ns"`
	CPUPerMember float64         `json:"cpu_per_member"` // fraction of one core
	JoinDiag     diag            `json:"join_diag"`      // from the first member's start to all see all
	IdleDiag     diag            `json:"idle_diag"`      // the idle window: any suspicion here is false
	RoundsDiag   diag            `json:"rounds_diag"`    // the spread and dead rounds
	// The pause round: one member frozen for -pause, then watched for 15 s.
	PauseDead     int `json:"pause_dead"`     // members that declared it dead (a false positive)
	PauseSuspects int `json:"pause_suspects"` // probes of it that failed (suspicions raised)
}

// watch records what every member sees of the others.
type watch struct {
	mu     sync.Mutex
	alive  map[string]int             // name -> members that see it alive
	dead   map[string][]time.Time     // name -> when each member declared it dead
	update map[string]map[string]bool // name -> members that saw its new meta
	want   map[string]string          // name -> the meta being spread
	upAt   map[string]time.Time       // name -> when the last member saw the new meta
}

func newWatch() *watch {
	return &watch{alive: map[string]int{}, dead: map[string][]time.Time{}, update: map[string]map[string]bool{}, want: map[string]string{}, upAt: map[string]time.Time{}}
}

// events is one member's memberlist.EventDelegate.
type events struct {
	self string
	w    *watch
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.w.mu.Lock()
	e.w.alive[n.Name]++
	e.w.mu.Unlock()
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.w.mu.Lock()
	e.w.alive[n.Name]--
	e.w.dead[n.Name] = append(e.w.dead[n.Name], time.Now())
	e.w.mu.Unlock()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if want, ok := e.w.want[n.Name]; ok && string(n.Meta) == want && !e.w.update[n.Name][e.self] {
		e.w.update[n.Name][e.self] = true
		e.w.upAt[n.Name] = time.Now()
	}
}

// meta is a member's changeable metadata.
type meta struct {
	mu sync.Mutex
	b  []byte
}

func (m *meta) NodeMeta(limit int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.b)
}
func (m *meta) NotifyMsg([]byte)                           {}
func (m *meta) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *meta) LocalState(join bool) []byte                { return nil }
func (m *meta) MergeRemoteState(buf []byte, join bool)     {}

type member struct {
	name string
	ml   *memberlist.Memberlist
	tr   *pausable
	meta *meta
	down bool
}

func runSize(n, rounds int, quiet time.Duration) (res result, err error) {
	w := newWatch()
	members := make([]*member, 0, n)
	defer func() {
		for _, m := range members {
			if !m.down {
				_ = m.ml.Shutdown()
			}
		}
	}()
	res = result{N: n}
	start := time.Now()
	s0 := takeSnap()
	for i := range n {
		name := fmt.Sprintf("node-%03d", i)
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = name
		cfg.BindAddr, cfg.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
		cfg.BindPort, cfg.AdvertisePort = 0, 0
		tr, err := newPausable("127.0.0.1")
		if err != nil {
			return res, fmt.Errorf("start member %d: %w", i, err)
		}
		cfg.Transport = tr
		cfg.BindPort, cfg.AdvertisePort = tr.GetAutoBindPort(), tr.GetAutoBindPort()
		tune(cfg)
		cfg.Logger = log.New(countLog{}, "", 0)
		md := &meta{b: []byte("v0")}
		cfg.Delegate = md
		cfg.Events = &events{self: name, w: w}
		ml, err := memberlist.Create(cfg)
		if err != nil {
			return res, fmt.Errorf("start member %d: %w", i, err)
		}
		members = append(members, &member{name: name, ml: ml, meta: md, tr: tr})
		if i > 0 {
			// Join through a member that already joined (not always the
			// first: one seed answering every push/pull of a growing pool
			// times out on a loaded machine); retry as a node would.
			var err error
			for try := range 5 {
				peer := members[(i*7+try)%i].ml.LocalNode().Address()
				if _, err = ml.Join([]string{peer}); err == nil {
					break
				}
			}
			if err != nil {
				return res, fmt.Errorf("member %d joins: %w", i, err)
			}
		}
		if i%50 == 49 {
			progress(n, "%d members joined in %s", i+1, time.Since(start).Round(time.Millisecond))
		}
		if d := time.Since(start); d > 3*time.Minute {
			// An unstable pool makes each join wait out its push/pull
			// timeouts; give up instead of running for an hour.
			return res, fmt.Errorf("only %d of %d members joined in %s (the pool is unstable; see the join line on stderr): %s", i+1, n, d.Round(time.Second), diagSince(s0))
		}
	}
	progress(n, "all %d started and joined in %s; waiting for all to see all", n, time.Since(start).Round(time.Millisecond))
	// Every member sees every member (itself included) alive.
	seeAll := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		k := 0
		for _, m := range members {
			if w.alive[m.name] >= n {
				k++
			}
		}
		return k
	}
	if err := waitUntil(2*time.Minute, func() bool { return seeAll() == n }); err != nil {
		// Not converged: say how far it got and measure the rest anyway.
		res.JoinNote = fmt.Sprintf("%d of %d seen alive by all after 2 min", seeAll(), n)
		fmt.Fprintf(os.Stderr, "%d members: join did not converge: %s\n", n, res.JoinNote)
	} else {
		res.Join = time.Since(start)
	}

	res.JoinDiag = diagSince(s0)

	progress(n, "converged (%s); idle window %s", res.Join, quiet)
	// CPU per member while nothing changes.
	s1 := takeSnap()
	time.Sleep(quiet) // a measurement window, not a wait for a condition
	res.IdleDiag = diagSince(s1)
	res.CPUPerMember = res.IdleDiag.CPU / float64(n)
	s2 := takeSnap()
	defer func() { res.RoundsDiag = diagSince(s2) }()

	pi := memberlist.DefaultLANConfig()
	tune(pi)
	res.SuspicionMin = suspicionMin(pi.SuspicionMult, n, pi.ProbeInterval)

	for r := range rounds {
		progress(n, "round %d: spread, then dead", r)
		// Spread: member 1+r changes its metadata.
		m := members[1+r]
		val := fmt.Sprintf("v%d", r+1)
		w.mu.Lock()
		w.want[m.name], w.update[m.name] = val, map[string]bool{}
		w.mu.Unlock()
		m.meta.mu.Lock()
		m.meta.b = []byte(val)
		m.meta.mu.Unlock()
		t := time.Now()
		if err := m.ml.UpdateNode(10 * time.Second); err != nil {
			return res, fmt.Errorf("update meta of %s: %w", m.name, err)
		}
		if err := waitUntil(time.Minute, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.update[m.name]) >= n-1-r // r members are down
		}); err != nil {
			w.mu.Lock()
			res.Notes = append(res.Notes, fmt.Sprintf("spread round %d: %d of %d saw the change within 1 min", r, len(w.update[m.name]), n-1-r))
			w.mu.Unlock()
		} else {
			w.mu.Lock()
			res.Spread = append(res.Spread, w.upAt[m.name].Sub(t))
			w.mu.Unlock()
		}

		// Dead: the last live member stops without leaving.
		d := members[n-1-r]
		t = time.Now()
		d.down = true
		if err := d.ml.Shutdown(); err != nil {
			return res, err
		}
		all := waitUntil(time.Minute, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(afterT(w.dead[d.name], t)) >= n-1-r
		}) == nil
		w.mu.Lock()
		ts := afterT(w.dead[d.name], t) // not the false deaths of an unstable pool before
		w.mu.Unlock()
		if len(ts) == 0 {
			return res, fmt.Errorf("dead round %d: nobody declared %s dead within 1 min", r, d.name)
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		res.DeadFirst = append(res.DeadFirst, ts[0].Sub(t))
		if all {
			res.DeadAll = append(res.DeadAll, ts[len(ts)-1].Sub(t))
		} else {
			res.Notes = append(res.Notes, fmt.Sprintf("dead round %d: %d of %d declared it dead within 1 min", r, len(ts), n-1-r))
		}
	}
	if pause > 0 {
		progress(n, "pause round: %s", pause)
		// Pause: a live member (none of the above) freezes, then is
		// watched for 15 s; nobody should declare it dead.
		p := members[n/2]
		watchName.Store(p.name)
		s0 := logCount.watched.Load()
		t := time.Now()
		p.tr.pause(pause)
		time.Sleep(pause + 15*time.Second) // a watch window, not a wait for a condition
		w.mu.Lock()
		res.PauseDead = len(afterT(w.dead[p.name], t))
		w.mu.Unlock()
		res.PauseSuspects = int(logCount.watched.Load() - s0)
	}
	return res, nil
}

// progress tells stderr where a long run is (a hang shows where).
func progress(n int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %d members: %s\n", time.Now().UTC().Format("15:04:05"), n, fmt.Sprintf(format, args...))
}

// afterT is the times in ts after t, sorted.
func afterT(ts []time.Time, t time.Time) []time.Time {
	var out []time.Time
	for _, x := range ts {
		if x.After(t) {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// suspicionMin is memberlist's shortest suspicion timeout for n members
// (suspicionTimeout in memberlist's util.go).
func suspicionMin(mult, n int, interval time.Duration) time.Duration {
	nodeScale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(mult) * nodeScale * float64(interval))
}

func waitUntil(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + limit.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
