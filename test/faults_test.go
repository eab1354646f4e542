package test

// The fault suite: randomized crashes, pauses and partitions against a live
// workload, checked afterwards for lost writes, stale reads, split brain,
// executors running twice and a cluster that does not converge.
//
// A schedule is drawn from a seeded RNG (faultSchedule), so a failure
// prints its seed and schedule and `make faults SEED=<seed>` replays it.
// Each schedule runs on a fresh cluster: 3 masters and 3 workers, each in
// its own network namespace on a bridge (netLab), the CLI on one more.
// Faults run at their offsets, overlapping when their times overlap; two
// faults on one node wait for each other (a node is killed or paused by
// one fault at a time). Every fault heals itself at its end.
//
// While the faults run, clients submit, scale, kill and read applications
// through random masters (faultWorkload); every call is recorded with its
// invocation and completion time, a timeout or any error counting as
// "unknown". The test bundle's executors append heartbeats (executor,
// worker, pid, wall time, the checksum of their bundle file) to a file
// the checker reads. Checks: faults_check_test.go.
//
// Environment: GEAR_FAULTS_SEED replays one seed; GEAR_FAULTS_N runs
// seeds 1..N (default 10, the CI set: about 6 minutes on 2 busy cores); GEAR_FAULTS_REPORT writes a summary
// (docs/FAULTS.md) there.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	faultMasters = 3
	faultWorkers = 3
	// faultWindow is how long faults are injected (the last one may end
	// a little later).
	faultWindow = 25 * time.Second
	// stopAfterDisconnect is the workers' fencing delay at the default
	// failover timeout (0.75 x 6 s).
	stopAfterDisconnect = 4500 * time.Millisecond
)

// faultKind is one kind of fault.
type faultKind string

const (
	fKillMaster  faultKind = "kill-master"    // kill -9, restart after dur
	fKillWorker  faultKind = "kill-worker"    // kill -9, restart after dur
	fPause       faultKind = "pause"          // SIGSTOP, SIGCONT after dur
	fLinkDown    faultKind = "link-down"      // the node's link down for dur
	fIsolateLead faultKind = "isolate-leader" // the leader's link down for dur
	fPartition   faultKind = "partition"      // nodes split in two sides
	fBridge      faultKind = "bridge"         // two sides, one node sees both
	fOneWay      faultKind = "one-way"        // from's packets to "to" dropped
	fFlap        faultKind = "flap"           // bridge port blocked/forwarding every 0.5 s
	fSlowLink    faultKind = "slow-link"      // tbf 1mbit on the node's link
	fFullRestart faultKind = "full-restart"   // every daemon killed -9 and restarted
	fDiskFull    faultKind = "disk-full"      // master0's data dir (a small tmpfs) filled for dur
)

// fault is one scheduled fault.
type fault struct {
	At    time.Duration
	Kind  faultKind
	Node  int   // the target node (masters 0-2, workers 3-5); -1 = none
	To    int   // one-way: the other node
	Sides []int // partition/bridge: side A (the rest is side B)
	Via   int   // bridge: the node that sees both sides
	// Wire (one-way, partition, bridge): the packets are lost in the
	// bridge, as on a real network, instead of refused by blackhole routes
	// in the senders' namespaces, which fail their sends locally (and
	// leave the kernel's retransmission timers out of play).
	Wire bool
	Dur  time.Duration
}

func (f fault) String() string {
	s := fmt.Sprintf("+%5.1fs %-14s", f.At.Seconds(), f.Kind)
	switch f.Kind {
	case fPartition:
		s += fmt.Sprintf(" side %v", f.Sides)
	case fBridge:
		s += fmt.Sprintf(" side %v via %s", f.Sides, nodeName(f.Via))
	case fOneWay:
		s += fmt.Sprintf(" %s -> %s", nodeName(f.Node), nodeName(f.To))
	case fIsolateLead, fFullRestart:
	default:
		s += " " + nodeName(f.Node)
	}
	s += fmt.Sprintf(" for %.1fs", f.Dur.Seconds())
	if f.Wire {
		s += " (lost on the wire)"
	}
	return s
}

func nodeName(n int) string {
	if n < faultMasters {
		return fmt.Sprintf("master%d", n)
	}
	return fmt.Sprintf("worker%d", n-faultMasters)
}

// faultSchedule draws a schedule from seed: 6-10 faults over faultWindow.
func faultSchedule(seed int64) []fault {
	rng := rand.New(rand.NewSource(seed))
	nodes := faultMasters + faultWorkers
	dur := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int63n(int64(hi-lo)))
	}
	kinds := []faultKind{fKillMaster, fKillWorker, fPause, fPause, fLinkDown, fIsolateLead, fPartition,
		fBridge, fOneWay, fFlap, fSlowLink, fKillMaster, fLinkDown}
	n := 6 + rng.Intn(5)
	var out []fault
	for i := 0; i < n; i++ {
		f := fault{At: dur(0, faultWindow-3*time.Second), Kind: kinds[rng.Intn(len(kinds))], Node: rng.Intn(nodes), To: -1, Via: -1}
		switch f.Kind {
		case fKillMaster:
			f.Node = rng.Intn(faultMasters)
			f.Dur = dur(200*time.Millisecond, 3*time.Second)
		case fKillWorker:
			f.Node = faultMasters + rng.Intn(faultWorkers)
			f.Dur = dur(200*time.Millisecond, 3*time.Second)
		case fPause:
			f.Dur = dur(100*time.Millisecond, 3*time.Second)
		case fLinkDown, fIsolateLead:
			f.Dur = dur(time.Second, 9*time.Second)
		case fPartition, fBridge:
			// Side A: one or two nodes of each kind at most, so that
			// both sides hold someone.
			perm := rng.Perm(nodes)
			k := 1 + rng.Intn(nodes/2)
			f.Sides = append([]int(nil), perm[:k]...)
			sort.Ints(f.Sides)
			if f.Kind == fBridge {
				f.Via = perm[k+rng.Intn(nodes-k)]
			}
			f.Dur = dur(time.Second, 8*time.Second)
		case fOneWay:
			f.To = (f.Node + 1 + rng.Intn(nodes-1)) % nodes
			f.Dur = dur(time.Second, 6*time.Second)
		case fFlap:
			f.Dur = dur(2*time.Second, 6*time.Second)
		case fSlowLink:
			f.Dur = dur(2*time.Second, 8*time.Second)
		}
		if f.Kind == fIsolateLead || f.Kind == fPartition || f.Kind == fBridge {
			f.Node = -1
		}
		out = append(out, f)
	}
	// One schedule in four restarts the whole cluster once.
	if rng.Intn(4) == 0 {
		out = append(out, fault{At: dur(0, faultWindow-3*time.Second), Kind: fFullRestart, Node: -1, To: -1, Via: -1, Dur: dur(200*time.Millisecond, 2*time.Second)})
	}
	// One in three fills master0's disk (drawn last, so that adding it
	// left the earlier draws of every seed as they were).
	if rng.Intn(3) == 0 {
		out = append(out, fault{At: dur(0, faultWindow-3*time.Second), Kind: fDiskFull, Node: 0, To: -1, Via: -1, Dur: dur(time.Second, 6*time.Second)})
	}
	// Half the cuts lose packets on the wire (drawn last, as above).
	for i := range out {
		if k := out[i].Kind; k == fOneWay || k == fPartition || k == fBridge {
			out[i].Wire = rng.Intn(2) == 0
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// faultSeeds are the seeds this run uses.
func faultSeeds(t *testing.T) []int64 {
	if s := os.Getenv("GEAR_FAULTS_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("GEAR_FAULTS_SEED=%q: want an integer seed (as a failed run printed it)", s)
		}
		return []int64{seed}
	}
	n := 10
	if s := os.Getenv("GEAR_FAULTS_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("GEAR_FAULTS_N=%q: want a number of schedules >= 1", s)
		}
		n = v
	}
	var seeds []int64
	for i := 1; i <= n; i++ {
		seeds = append(seeds, int64(i))
	}
	return seeds
}

// TestFaults runs the seeded schedules (see the file comment).
func TestFaults(t *testing.T) {
	needProgram(t, "tc")
	needProgram(t, "bridge")
	var results []*faultRun
	for _, seed := range faultSeeds(t) {
		r := &faultRun{seed: seed, schedule: faultSchedule(seed)}
		results = append(results, r)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r.run(t)
			if t.Failed() {
				t.Logf("replay with: make faults SEED=%d\nschedule:\n%s", seed, r.scheduleText())
			}
		})
	}
	if path := os.Getenv("GEAR_FAULTS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(faultReport(results)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("summary written to %s", path)
	}
}

// faultRun is one schedule's run and what it found.
type faultRun struct {
	seed     int64
	schedule []fault
	ops      []faultOp
	anoms    []string
	// converged is how long the cluster took to converge after the last
	// fault healed; -1 if it did not.
	converged time.Duration
	failed    bool
	lin       string // the linearizability verdict
	errs      []string

	nc      *netCluster
	out     string // GEAR_TEST_OUT: the heartbeat file's directory
	mu      sync.Mutex
	nodeMu  []sync.Mutex
	down    map[int][][2]time.Time // worker node -> intervals it was frozen or dead
	procsMu sync.Mutex             // guards nc.procs while faults restart daemons
}

func (r *faultRun) scheduleText() string {
	var b strings.Builder
	for _, f := range r.schedule {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	return b.String()
}

func (r *faultRun) anomaly(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.anoms = append(r.anoms, msg)
	r.mu.Unlock()
	t.Error("ANOMALY: " + msg)
}

// cmdErr records a fault command that failed (the fault then did not
// happen as scheduled; the test fails, since the run proves less).
func (r *faultRun) sh(t *testing.T, name string, args ...string) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, fmt.Sprintf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out)))
		r.mu.Unlock()
	}
}

// cutCmds are the commands (program first) that cut the packets from the
// nodes in from to node to, and those that heal the cut: lost in the
// bridge when wire is set, else blackhole routes in the senders'
// namespaces.
func cutCmds(lab *netLab, wire bool, to int, from []int) (add, del [][]string) {
	if wire {
		a, d := lab.dropCmds(to, from)
		for _, c := range a {
			add = append(add, append([]string{"tc"}, c...))
		}
		for _, c := range d {
			del = append(del, append([]string{"tc"}, c...))
		}
		return add, del
	}
	for _, f := range from {
		add = append(add, []string{"ip", "-n", lab.nodes[f], "route", "add", "blackhole", lab.ips[to] + "/32"})
		del = append(del, []string{"ip", "-n", lab.nodes[f], "route", "del", "blackhole", lab.ips[to] + "/32"})
	}
	return add, del
}

// faultBundle's executors append a heartbeat every 200 ms: "hb <app>
// <executor> <worker> <pid> <unix ns> <sha256 of their bundle file>".
const faultScript = `#!/bin/sh
sum=$(sha256sum "$GEAR_BUNDLE" | cut -d' ' -f1)
trap 'exit 0' TERM
while :; do
	echo "hb $GEAR_APP_ID $GEAR_EXECUTOR_ID $GEAR_WORKER_ID $$ $(date +%s%N) $sum" >> "$GEAR_TEST_OUT/hb"
	sleep 0.2
done
`

func (r *faultRun) run(t *testing.T) {
	t.Logf("seed %d, schedule:\n%s", r.seed, r.scheduleText())
	r.out = t.TempDir()
	t.Cleanup(func() { r.keepLogs(t) }) // last: after the sweep, which may fail the test
	t.Cleanup(func() { sweepExecutors(t, r.out) })
	var disk string
	mounted := false
	t.Cleanup(func() { // after the daemons stopped
		if mounted {
			if out, err := exec.Command("umount", disk).CombinedOutput(); err != nil {
				t.Logf("umount %s: %v: %s; unmounting lazily", disk, err, out)
				_ = exec.Command("umount", "-l", disk).Run()
			}
		}
	})
	// Small raft segments: a small disk holds several, and segments are
	// sealed often (a crash while sealing is one of the faults' targets).
	r.nc = newNetCluster(t, "gear.raft.segment-size = 256KiB\n", 3, 4, 5)
	nc := r.nc
	r.nodeMu = make([]sync.Mutex, faultMasters+faultWorkers)
	r.down = map[int][][2]time.Time{}
	bundle := filepath.Join(t.TempDir(), "fault.tar.gz")
	writeTarGz(t, bundle, map[string]string{
		"gear-app.conf": fmt.Sprintf("name = \"fault\"\nprocesses {\n  main {\n    command = [\"./hb.sh\"]\n    instances = 1\n    cpus = 0\n    restart = \"always\"\n    env { GEAR_TEST_OUT = %q }\n  }\n}\n", r.out),
		"hb.sh":         faultScript,
	})
	nc.stable()
	// master0's data dir moves onto a 24 MB tmpfs (same path) that the
	// disk-full fault fills.
	disk = filepath.Join(nc.dir, "master0")
	r.killNode(0)
	keep := disk + ".copy"
	for _, c := range [][]string{{"cp", "-a", disk, keep}, {"mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", disk}, {"cp", "-a", keep + "/.", disk}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
		mounted = mounted || c[0] == "mount"
	}
	r.restart(t, 0)
	nc.stable()
	waitFor(t, 60*time.Second, "3 workers alive", func() bool { return r.aliveWorkers() == faultWorkers })

	sampler := newLeaderSampler(r)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sampler.run(ctx) }()
	wl := newFaultWorkload(r, bundle)
	wctx, wcancel := context.WithCancel(context.Background())
	var wwg sync.WaitGroup
	for c := 0; c < 3; c++ {
		wwg.Add(1)
		go func() { defer wwg.Done(); wl.client(wctx, c) }()
	}

	start := time.Now()
	var fwg sync.WaitGroup
	for _, f := range r.schedule {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			time.Sleep(time.Until(start.Add(f.At))) // the schedule's own clock
			r.inject(t, f)
		}()
	}
	fwg.Wait()
	healed := time.Now()
	wcancel()
	wwg.Wait()
	t.Logf("faults done %v after the start; %d operations", healed.Sub(start).Round(time.Millisecond), len(wl.ops))
	for _, e := range r.errs {
		t.Errorf("a fault could not be injected or healed: %s", e)
	}

	r.converged = r.converge(t, wl)
	cancel()
	wg.Wait()
	if r.converged >= 0 {
		t.Logf("converged %v after the last fault healed", r.converged.Round(time.Millisecond))
		wl.finalRead(t)
	}
	r.ops = wl.ops
	r.check(t, wl, sampler)
	r.failed = t.Failed()
}

// keepLogs copies the daemons' logs and the heartbeats of a failed run to
// $TMPDIR/gear-faults-<seed>, since the test's own directories go away.
func (r *faultRun) keepLogs(t *testing.T) {
	if !t.Failed() || r.nc == nil {
		return
	}
	dst := filepath.Join(os.TempDir(), fmt.Sprintf("gear-faults-%d", r.seed))
	_ = os.MkdirAll(dst, 0o755)
	logs, _ := filepath.Glob(filepath.Join(r.nc.dir, "*.log"))
	for _, src := range append(logs, filepath.Join(r.out, "hb")) {
		if b, err := os.ReadFile(src); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(src)), b, 0o644)
		}
	}
	t.Logf("daemon logs and heartbeats kept in %s", dst)
}

// proc returns the daemon on node n.
func (r *faultRun) procOf(n int) *proc {
	r.procsMu.Lock()
	defer r.procsMu.Unlock()
	return r.nc.procs[nodeName(n)]
}

func (r *faultRun) restart(t *testing.T, n int) {
	r.procsMu.Lock()
	defer r.procsMu.Unlock()
	if n < faultMasters {
		r.nc.startMaster(n)
		return
	}
	name := nodeName(n)
	r.nc.start(name, "worker", "-ip", r.nc.lab.ips[n], "-datadir", filepath.Join(r.nc.dir, name))
}

func (r *faultRun) killNode(n int) {
	p := r.procOf(n)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (r *faultRun) markDown(n int, from, to time.Time) {
	if n < faultMasters {
		return
	}
	r.mu.Lock()
	r.down[n] = append(r.down[n], [2]time.Time{from, to})
	r.mu.Unlock()
}

// lock takes the nodes' locks in order; the returned func releases them.
func (r *faultRun) lock(nodes ...int) func() {
	nodes = append([]int(nil), nodes...)
	sort.Ints(nodes)
	var uniq []int
	for i, n := range nodes {
		if i == 0 || n != nodes[i-1] {
			uniq = append(uniq, n)
		}
	}
	for _, n := range uniq {
		r.nodeMu[n].Lock()
	}
	return func() {
		for _, n := range uniq {
			r.nodeMu[n].Unlock()
		}
	}
}

func allNodes() []int {
	var ns []int
	for i := 0; i < faultMasters+faultWorkers; i++ {
		ns = append(ns, i)
	}
	return ns
}

// inject runs one fault to its end and heals it.
func (r *faultRun) inject(t *testing.T, f fault) {
	lab := r.nc.lab
	switch f.Kind {
	case fKillMaster, fKillWorker:
		defer r.lock(f.Node)()
		from := time.Now()
		r.killNode(f.Node)
		time.Sleep(f.Dur)
		r.restart(t, f.Node)
		r.markDown(f.Node, from, time.Now())
	case fPause:
		defer r.lock(f.Node)()
		p := r.procOf(f.Node)
		from := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(f.Dur)
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		r.markDown(f.Node, from, time.Now())
	case fLinkDown:
		defer r.lock(f.Node)()
		r.sh(t, "ip", "-n", lab.bridge, "link", "set", fmt.Sprintf("v%d", f.Node), "down")
		time.Sleep(f.Dur)
		r.sh(t, "ip", "-n", lab.bridge, "link", "set", fmt.Sprintf("v%d", f.Node), "up")
	case fIsolateLead:
		li := r.currentLeader()
		if li < 0 {
			return // no leader to isolate right now
		}
		defer r.lock(li)()
		r.sh(t, "ip", "-n", lab.bridge, "link", "set", fmt.Sprintf("v%d", li), "down")
		time.Sleep(f.Dur)
		r.sh(t, "ip", "-n", lab.bridge, "link", "set", fmt.Sprintf("v%d", li), "up")
	case fPartition, fBridge:
		defer r.lock(allNodes()...)()
		inA := map[int]bool{}
		for _, n := range f.Sides {
			inA[n] = true
		}
		// Each side's packets to the other are lost (f.Wire) or refused.
		from := map[int][]int{} // destination -> sources cut from it
		for a := range inA {
			for b := 0; b < faultMasters+faultWorkers; b++ {
				if inA[b] || a == f.Via || b == f.Via {
					continue
				}
				from[b] = append(from[b], a)
				from[a] = append(from[a], b)
			}
		}
		var undo [][]string
		for to, srcs := range from {
			add, del := cutCmds(lab, f.Wire, to, srcs)
			for _, c := range add {
				r.sh(t, c[0], c[1:]...)
			}
			undo = append(undo, del...)
		}
		time.Sleep(f.Dur)
		for _, c := range undo {
			r.sh(t, c[0], c[1:]...)
		}
	case fOneWay:
		defer r.lock(f.Node, f.To)()
		add, del := cutCmds(lab, f.Wire, f.To, []int{f.Node})
		for _, c := range add {
			r.sh(t, c[0], c[1:]...)
		}
		time.Sleep(f.Dur)
		for _, c := range del {
			r.sh(t, c[0], c[1:]...)
		}
	case fFlap:
		defer r.lock(f.Node)()
		port := fmt.Sprintf("v%d", f.Node)
		for end := time.Now().Add(f.Dur); time.Now().Before(end); {
			r.sh(t, "bridge", "-n", lab.bridge, "link", "set", "dev", port, "state", "0")
			time.Sleep(500 * time.Millisecond) // the fault's own rhythm
			r.sh(t, "bridge", "-n", lab.bridge, "link", "set", "dev", port, "state", "3")
			time.Sleep(500 * time.Millisecond)
		}
	case fSlowLink:
		defer r.lock(f.Node)()
		r.sh(t, "ip", "netns", "exec", lab.nodes[f.Node], "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms")
		time.Sleep(f.Dur)
		r.sh(t, "ip", "netns", "exec", lab.nodes[f.Node], "tc", "qdisc", "del", "dev", "eth0", "root")
	case fDiskFull:
		defer r.lock(f.Node)()
		fill := filepath.Join(r.nc.dir, "master0", "fill")
		if err := fillUp(fill); err != nil {
			r.mu.Lock()
			r.errs = append(r.errs, err.Error())
			r.mu.Unlock()
		}
		time.Sleep(f.Dur)
		_ = os.Remove(fill)
	case fFullRestart:
		defer r.lock(allNodes()...)()
		from := time.Now()
		for _, n := range allNodes() {
			r.killNode(n)
		}
		time.Sleep(f.Dur)
		for _, n := range allNodes() {
			r.restart(t, n)
		}
		for _, n := range allNodes() {
			r.markDown(n, from, time.Now())
		}
	}
}

// fillUp writes path until its file system is full.
func fillUp(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
}

// currentLeader is the node index of the leader as the masters report it
// now, -1 if none answers.
func (r *faultRun) currentLeader() int {
	out, _, code := r.cli(5*time.Second, r.nc.masters, "masters", "-json")
	if code != 0 {
		return -1
	}
	for _, v := range parseMasters(out) {
		if v.State == "leader" {
			return indexOf(r.nc.masters, v.Addr)
		}
	}
	return -1
}

// cli runs the CLI from the CLI node against masters, bounded by timeout;
// code -1 means it did not finish in time.
func (r *faultRun) cli(timeout time.Duration, masters []string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.nc.lab.nodes[r.nc.cli], gearBin, "-conf", r.nc.conf, "-master", strings.Join(masters, ",")}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), errb.String(), -1
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		return "", err.Error(), -1
	}
	return out.String(), errb.String(), 0
}

func (r *faultRun) aliveWorkers() int {
	out, _, code := r.cli(10*time.Second, r.nc.masters, "workers", "-json")
	if code != 0 {
		return 0
	}
	return strings.Count(out, `"alive": true`)
}

// A seed always draws the same schedule: replay depends on it.
func TestFaultScheduleReplays(t *testing.T) {
	kinds := map[faultKind]int{}
	for seed := int64(1); seed <= 20; seed++ {
		a, b := faultSchedule(seed), faultSchedule(seed)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("seed %d drew two schedules:\n%v\n%v", seed, a, b)
		}
		for _, f := range a {
			kinds[f.Kind]++
			if f.Kind == fDiskFull && testing.Verbose() {
				t.Logf("seed %d fills the disk", seed)
			}
		}
	}
	if len(kinds) < 12 {
		t.Fatalf("20 seeds drew only %d kinds of fault: %v", len(kinds), kinds)
	}
}
