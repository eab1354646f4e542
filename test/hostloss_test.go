package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// Machine-loss tests: each master (and worker) in its own network
// namespace on one bridge (netLab), at the default failover timeout, so
// that the timings asserted are the ones a user gets.

// raceBuild reports whether the daemons and the CLI are built with the
// race detector, which slows them several times: end-to-end latencies are
// then logged but not held to the targets (the detector's own campaign
// time, read from the daemon's log, still is).
func raceBuild() bool { return os.Getenv("GEAR_TEST_RACE") == "1" }

// netCluster is a testCluster whose daemons and CLI run inside a netLab.
type netCluster struct {
	*testCluster
	lab     *netLab
	cli     int            // the lab node the CLI runs on
	workers map[string]int // worker name -> lab node
}

// newNetCluster starts 3 masters on lab nodes 0-2 and one worker on each
// lab node in workerNodes (a node may hold a master too: one machine),
// with the CLI on one more node.
func newNetCluster(t *testing.T, conf string, workerNodes ...int) *netCluster {
	t.Helper()
	nodes := 4
	for _, n := range workerNodes {
		nodes = max(nodes, n+2)
	}
	lab := newNetLab(t, nodes)
	nc := &netCluster{lab: lab, cli: nodes - 1, workers: map[string]int{}}
	dir := t.TempDir()
	c := &testCluster{t: t, dir: dir, procs: map[string]*proc{}}
	nc.testCluster = c
	var quoted []string
	for i := 0; i < 3; i++ {
		c.masters = append(c.masters, lab.ips[i]+":3000")
		quoted = append(quoted, strconv.Quote(lab.ips[i]+":3000"))
	}
	c.conf = filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(c.conf, []byte(fmt.Sprintf("gear.cluster.masters = [%s]\ngear.log.level = debug\n%s\n", strings.Join(quoted, ", "), conf)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.netns = func(name string) string {
		if name == "cli" {
			return lab.nodes[nc.cli]
		}
		if n, ok := nc.workers[name]; ok {
			return lab.nodes[n]
		}
		var i int
		if _, err := fmt.Sscanf(name, "master%d", &i); err == nil {
			return lab.nodes[i]
		}
		return ""
	}
	t.Cleanup(c.stopAll)
	for i := 0; i < 3; i++ {
		c.startMaster(i)
	}
	for i, n := range workerNodes {
		name := fmt.Sprintf("worker%d", i)
		nc.workers[name] = n
		c.start(name, "worker", "-ip", lab.ips[n], "-datadir", filepath.Join(dir, name))
	}
	return nc
}

// on runs the CLI against the given masters only.
func (nc *netCluster) on(masters []string, args ...string) (string, string, int) {
	return nc.gear(append([]string{"-master", strings.Join(masters, ",")}, args...)...)
}

func (nc *netCluster) views(masters []string) []cluster.Master {
	out, _, code := nc.on(masters, "masters", "-json")
	if code != 0 {
		return nil
	}
	var ms []cluster.Master
	_ = json.Unmarshal([]byte(out), &ms)
	return ms
}

// stable waits until every master answers, all follow one leader with
// quorum, and returns the leader's index and the term.
func (nc *netCluster) stable() (int, uint64) {
	nc.t.Helper()
	var li int
	var term uint64
	waitFor(nc.t, 60*time.Second, "3 masters agreeing on a leader", func() bool {
		vs := nc.views(nc.masters)
		if len(vs) != 3 {
			return false
		}
		li = -1
		for _, v := range vs {
			if v.State == "unreachable" || v.Leader == "" || v.Leader != vs[0].Leader || v.Term != vs[0].Term || !v.Quorum {
				return false
			}
			if v.State == "leader" {
				li = indexOf(nc.masters, v.Addr)
			}
		}
		term = vs[0].Term
		return li >= 0
	})
	return li, term
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// others are the masters but i.
func (nc *netCluster) others(i int) []string {
	var out []string
	for j, m := range nc.masters {
		if j != i {
			out = append(out, m)
		}
	}
	return out
}

// blackhole drops node from's packets to node to (a route in from's
// namespace); the returned func removes it.
func (l *netLab) blackhole(from, to int) func() {
	ipCmd(l.t, "-n", l.nodes[from], "route", "add", "blackhole", l.ips[to]+"/32")
	return func() { ipCmd(l.t, "-n", l.nodes[from], "route", "del", "blackhole", l.ips[to]+"/32") }
}

// drop makes the network lose node from's IP packets to node to: a filter
// on the bridge's port to node to, so from's kernel sends and retransmits
// into a lossy network as it would on a real one (a blackhole route
// instead fails the sends locally, and the kernel's retransmission timers,
// TCP_USER_TIMEOUT among them, then do not run as they would). ARP passes.
// The returned func removes it.
func (l *netLab) drop(from, to int) func() {
	add, del := l.dropCmds(to, []int{from})
	for _, c := range add {
		tcCmd(l.t, c...)
	}
	return func() {
		for _, c := range del {
			tcCmd(l.t, c...)
		}
	}
}

// dropCmds are the tc commands (arguments of tc) that make the bridge lose
// the IP packets from the nodes in from to node to, and those that undo it.
// This kernel has neither tc's drop action nor netem: the packets go to an
// htb class whose queue holds nothing. Only one such set per node at a time
// (it owns the root qdisc of the node's bridge port).
func (l *netLab) dropCmds(to int, from []int) (add, del [][]string) {
	port := fmt.Sprintf("v%d", to)
	tc := func(args ...string) []string { return append([]string{"-n", l.bridge}, args...) }
	add = [][]string{
		tc("qdisc", "add", "dev", port, "root", "handle", "1:", "htb", "default", "1", "r2q", "100000"),
		tc("class", "add", "dev", port, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"),
		tc("class", "add", "dev", port, "parent", "1:", "classid", "1:2", "htb", "rate", "10gbit"),
		tc("qdisc", "add", "dev", port, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0"),
	}
	for _, f := range from {
		add = append(add, tc("filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "src", l.ips[f]+"/32", "flowid", "1:2"))
	}
	return add, [][]string{tc("qdisc", "del", "dev", port, "root")}
}

func tcCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("tc", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// block makes the bridge drop node i's traffic without taking its link
// down (a switch port that stops forwarding; the node's NIC keeps its
// carrier); unblock forwards again.
//
// A flap made of carrier losses (cut/heal) is not survivable by any
// program: the kernel flushes the node's neighbour (ARP) entries on every
// carrier loss and re-resolves with probes 1 s apart, which a 1 s flap
// keeps landing in the down half. Measured on this machine with a plain
// TCP connect loop: no connect at all succeeded during 10 s of 0.5 s
// down/0.5 s up carrier flaps, and one in every up phase with the bridge
// port blocked instead.
func (l *netLab) block(i int) {
	bridgeCmd(l.t, "-n", l.bridge, "link", "set", "dev", fmt.Sprintf("v%d", i), "state", "0")
}
func (l *netLab) unblock(i int) {
	bridgeCmd(l.t, "-n", l.bridge, "link", "set", "dev", fmt.Sprintf("v%d", i), "state", "3")
}

func bridgeCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("bridge", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bridge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// noElection watches the masters for d and fails at once if any of them
// reports a term above term or a leader other than leader.
func (nc *netCluster) noElection(what string, d time.Duration, leader string, term uint64) {
	nc.t.Helper()
	end := time.Now().Add(d)
	polls := 0
	for time.Now().Before(end) {
		for _, v := range nc.views(nc.masters) {
			if v.State == "unreachable" {
				continue
			}
			if v.Term > term {
				nc.t.Fatalf("%s: master %s is in term %d (was %d): an election without cause", what, v.Addr, v.Term, term)
			}
			if v.State == "leader" && v.Addr != leader {
				nc.t.Fatalf("%s: %s leads, not %s", what, v.Addr, leader)
			}
		}
		polls++
		time.Sleep(200 * time.Millisecond)
	}
	nc.t.Logf("%s: no election over %v (%d polls)", what, d, polls)
}

// masterLogTime returns the time of master i's first log line with s.
func (nc *netCluster) masterLogTime(i int, s string) (time.Time, bool) {
	for _, line := range strings.Split(readFile(nc.t, nc.procs[fmt.Sprintf("master%d", i)].log), "\n") {
		if !strings.Contains(line, s) {
			continue
		}
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "time=") {
			if at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time=")); err == nil {
				return at, true
			}
		}
		return time.Time{}, true
	}
	return time.Time{}, false
}

// masterLogHas reports whether master i logged s.
func (nc *netCluster) masterLogHas(i int, s string) bool {
	return strings.Contains(readFile(nc.t, nc.procs[fmt.Sprintf("master%d", i)].log), s)
}

// The leader's machine disappears (its link goes down: nothing answers,
// nothing refuses). The survivors agree through gossip that it is silent
// and one of them campaigns at once: a write is accepted well before
// raft's own timers (1.5-3 s of silence, then an election) would have
// allowed, and the old leader shows as suspect or dead in gossip.
func TestLeaderHostLost(t *testing.T) {
	nc := newNetCluster(t, "")
	li, term := nc.stable()
	bundle := example("hello.tar.gz")
	if _, errOut, code := nc.on(nc.masters, "app", "submit", bundle, "-executors", "0", "-quiet"); code != 0 {
		t.Fatalf("write before the cut: %s", errOut)
	}
	survivors := nc.others(li)
	nc.lab.cut(li)
	cut := time.Now()
	var took time.Duration
	waitFor(t, 15*time.Second, "a survivor to accept a write", func() bool {
		_, _, code := nc.on(survivors, "app", "submit", bundle, "-executors", "0", "-quiet")
		took = time.Since(cut)
		return code == 0
	})
	t.Logf("leader machine lost: a survivor accepted a write %v after the cut", took.Round(time.Millisecond))
	campaigned := false
	for _, i := range []int{0, 1, 2} {
		if at, ok := nc.masterLogTime(i, "a majority of the masters find the leader's machine silent"); ok && i != li {
			campaigned = true
			t.Logf("master%d campaigned %v after the cut", i, at.Sub(cut).Round(time.Millisecond))
			if d := at.Sub(cut); d > time.Second {
				t.Fatalf("the survivors agreed the leader was silent only %v after the cut, want < 1s", d)
			}
		}
	}
	if !campaigned {
		t.Fatal("no survivor campaigned on the masters' shared verdict (raft's own timer did the work)")
	}
	if took > 2*time.Second && !raceBuild() {
		t.Fatalf("the write took %v after the leader's machine was lost, want < 2s", took)
	}
	vs := nc.views(survivors)
	for _, v := range vs {
		if v.State == "leader" && v.Term <= term {
			t.Fatalf("new leader %s in term %d, not above %d", v.Addr, v.Term, term)
		}
	}
	waitFor(t, 20*time.Second, "the survivors' gossip to suspect or drop the lost leader", func() bool {
		for _, v := range nc.views(survivors) {
			if v.Addr == nc.masters[li] {
				return (v.Gossip == "suspect" || v.Gossip == "dead") && !v.GossipSince.IsZero()
			}
		}
		return false
	})
}

// Nothing moves without cause: a leader paused for 1 s, one follower that
// alone loses its link to the leader (one way, then both ways), and a
// worker whose link flaps cause no election, and the flapping worker is
// neither downed nor are its executors restarted.
func TestNoElectionWithoutCause(t *testing.T) {
	nc := newNetCluster(t, "", 3) // a worker on its own node 3; the CLI on 4
	li, term := nc.stable()
	leader := nc.masters[li]
	ms := nc.masters

	// The leader's process is paused for 1 s: its kernel still completes
	// the followers' probes, so they find it alive, not silent.
	p := nc.procs[fmt.Sprintf("master%d", li)]
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the fault itself, not a wait for a result
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	nc.noElection("leader paused 1s", 4*time.Second, leader, term)
	// Nor does the gossip pool declare it dead: gossip.Tune's suspicion
	// (1 probe interval x log10(N), the shortest at this size) leaves a
	// member paused for 1 s the time to refute (memberlist's log line).
	for j := range ms {
		if j != li && nc.masterLogHas(j, "Marking master@"+leader+" as failed") {
			t.Fatalf("master %s declared the leader %s dead in gossip after a 1 s pause", ms[j], leader)
		}
	}

	// One follower alone loses its link to the leader.
	f := (li + 1) % 3
	heal := nc.lab.blackhole(f, li)
	nc.noElection("follower blackholed to the leader, one way", 5*time.Second, leader, term)
	if !nc.masterLogHas(f, "leader's machine does not answer") {
		t.Fatal("the cut-off follower never judged the leader silent: the scenario did not test the detector")
	}
	heal()
	waitFor(t, 20*time.Second, "the follower to hear from the leader again", func() bool {
		for _, v := range nc.views(ms) {
			if v.Addr == ms[f] {
				return v.State == "follower" && v.Leader == leader
			}
		}
		return false
	})
	heal1, heal2 := nc.lab.blackhole(f, li), nc.lab.blackhole(li, f)
	nc.noElection("follower blackholed to the leader, both ways", 5*time.Second, leader, term)
	heal1()
	heal2()
	waitFor(t, 20*time.Second, "the follower to hear from the leader again", func() bool {
		for _, v := range nc.views(ms) {
			if v.Addr == ms[f] {
				return v.State == "follower" && v.Leader == leader
			}
		}
		return false
	})

	// A worker's link flaps: down 0.5 s, up 0.5 s, for 10 s.
	var id string
	waitFor(t, 30*time.Second, "the worker to register", func() bool {
		out, _, code := nc.on(ms, "workers", "-json")
		return code == 0 && strings.Contains(out, `"alive": true`)
	})
	out, errOut, code := nc.on(ms, "app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet")
	if code != 0 {
		t.Fatalf("submit: %s", errOut)
	}
	id = strings.TrimSpace(out)
	var pids map[string]int
	waitFor(t, 40*time.Second, "app "+id+" RUNNING", func() bool {
		pids = runningPIDs(nc.app(id))
		return len(pids) == 1
	})
	killPIDsAtCleanup(t, pids)
	needProgram(t, "bridge")
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		nc.lab.block(3)
		time.Sleep(500 * time.Millisecond) // the fault's own rhythm
		nc.lab.unblock(3)
		time.Sleep(500 * time.Millisecond)
	}
	nc.noElection("worker link flapped 10s", 2*time.Second, leader, term)
	out, _, _ = nc.on(ms, "workers", "-json")
	var ws []cluster.Worker
	_ = json.Unmarshal([]byte(out), &ws)
	if len(ws) != 1 || !ws[0].Alive {
		t.Fatalf("the flapping worker was downed: %s", out)
	}
	t.Logf("flapping worker: alive=%v gossip=%s", ws[0].Alive, ws[0].Gossip)
	now := runningPIDs(nc.app(id))
	for e, pid := range pids {
		if now[e] != pid || !alive(pid) {
			t.Fatalf("executor %s restarted during the flap: pid %d, now %v", e, pid, now)
		}
	}
	if strings.Contains(readFile(t, nc.procs["worker0"].log), "stopping every executor") {
		t.Fatal("the flapping worker fenced its executors")
	}
}

// The leader's machine, which also runs a worker, disappears: a new leader
// takes over fast, gives the workers a full failover timeout on its own
// clock, and then the lost worker's executors run again on the others,
// within failover.timeout + 2 s of the loss. The lost worker stopped its
// executors before that (fencing): no executor ran on two workers at once.
func TestLeaderHostWithWorkerLost(t *testing.T) {
	const timeout = 6 * time.Second // the default gear.failover.timeout
	nc := newNetCluster(t, "", 0, 1, 2)
	li, _ := nc.stable()
	waitFor(t, 30*time.Second, "3 workers", func() bool {
		out, _, code := nc.on(nc.masters, "workers", "-json")
		return code == 0 && strings.Count(out, `"alive": true`) == 3
	})
	out, errOut, code := nc.on(nc.masters, "app", "submit", example("hello.tar.gz"), "-executors", "3", "-quiet")
	if code != 0 {
		t.Fatalf("submit: %s", errOut)
	}
	id := strings.TrimSpace(out)
	var pids map[string]int
	waitFor(t, 40*time.Second, "app "+id+" RUNNING", func() bool {
		pids = runningPIDs(nc.app(id))
		return len(pids) == 3
	})
	killPIDsAtCleanup(t, pids)
	lostWorker := strings.TrimSpace(readFile(t, filepath.Join(nc.dir, fmt.Sprintf("worker%d", li), "worker-id")))
	lostPIDs := map[string]int{}
	for _, e := range nc.app(id).Executors {
		if e.Worker == lostWorker {
			lostPIDs[e.ID] = e.PID
		}
	}
	if len(lostPIDs) == 0 {
		t.Fatalf("no executor on the leader's machine's worker %s: %+v", lostWorker, nc.app(id).Executors)
	}
	survivors := nc.others(li)
	nc.lab.cut(li)
	cut := time.Now()
	var took time.Duration
	waitFor(t, 30*time.Second, "the lost worker's executors to run elsewhere", func() bool {
		out, _, code := nc.on(survivors, "app", "list", "-json")
		if code != 0 {
			return false
		}
		var apps []cluster.App
		_ = json.Unmarshal([]byte(out), &apps)
		for _, a := range apps {
			if a.ID != id {
				continue
			}
			now := runningPIDs(&a)
			if len(now) != 3 {
				return false
			}
			for _, e := range a.Executors {
				if e.Worker == lostWorker {
					return false
				}
			}
			took = time.Since(cut)
			killPIDsAtCleanup(t, now)
			for e, old := range lostPIDs {
				if alive(old) {
					t.Fatalf("executor %s runs again elsewhere (pid %d) while the lost worker still runs it (pid %d): fencing failed", e, now[e], old)
				}
			}
			return true
		}
		return false
	})
	t.Logf("leader machine with a worker lost: its executors ran elsewhere %v after the cut", took.Round(time.Millisecond))
	if took > timeout+2*time.Second && !raceBuild() {
		t.Fatalf("executors moved %v after the loss, want within failover.timeout + 2s = %v", took, timeout+2*time.Second)
	}
}

// gear masters and gear workers show each member's gossip state as the
// answering master sees it, in -json as "gossip" and "gossip_since".
func TestGossipStateShown(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1})
	waitFor(t, 30*time.Second, "the master and the worker alive in gossip", func() bool {
		out, _, code := c.gear("masters", "-json")
		var ms []cluster.Master
		if code != 0 || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 1 || ms[0].Gossip != "alive" || ms[0].GossipSince.IsZero() {
			return false
		}
		out, _, code = c.gear("workers", "-json")
		var ws []cluster.Worker
		return code == 0 && json.Unmarshal([]byte(out), &ws) == nil && len(ws) == 1 && ws[0].Gossip == "alive" && !ws[0].GossipSince.IsZero()
	})
	for _, cmd := range []string{"masters", "workers"} {
		out := c.mustGear(cmd)
		if !strings.Contains(out, "GOSSIP") || !strings.Contains(out, "alive") {
			t.Fatalf("gear %s does not show the gossip state:\n%s", cmd, out)
		}
	}
	out := c.mustGear("workers", "-json")
	if !strings.Contains(out, `"gossip": "alive"`) || !strings.Contains(out, `"gossip_since": "`) {
		t.Fatalf("gear workers -json lacks gossip/gossip_since:\n%s", out)
	}
}
