package main

// Network faults: each member of both systems runs in its own network
// namespace, all joined by veth pairs to one bridge that lives in another
// namespace the benchmark creates (addresses 10.78.x.y, never the host's
// network); the benchmark's own probes dial from one more namespace.
//
//   - host-loss: the leader's link goes down (nothing answers, nothing
//     refuses: a lost machine); time until a survivor accepts a write.
//   - one-way (leader mute): the leader can receive but not send to the
//     followers (blackhole routes in its namespace, or with -cut wire its
//     packets lost in the bridge); time until a survivor accepts a write.
//   - one-way (one follower): one follower cannot send to the leader; the
//     group has a healthy majority, so any election is one without cause.
//
// Rounds of gear and etcd alternate, as in the kill rounds.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netLab is the benchmark's private network.
type netLab struct {
	prefix string
	bridge string
	nodes  []string // namespace per node
	ips    []string
	wire   bool // mute loses packets in the bridge instead of a blackhole route
}

func run1(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetLab creates n nodes on one bridge. The caller closes it.
func newNetLab(n int) (*netLab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("the ip command (iproute2) is missing")
	}
	id := strconv.Itoa(os.Getpid() % 100000)
	l := &netLab{prefix: "gbf" + id + "n", bridge: "gbf" + id + "br"}
	subnet := 10 + os.Getpid()%200
	steps := [][]string{{"ip", "netns", "add", l.bridge}, {"ip", "-n", l.bridge, "link", "add", "br0", "type", "bridge"}, {"ip", "-n", l.bridge, "link", "set", "br0", "up"}}
	for _, s := range steps {
		if err := run1(s...); err != nil {
			l.close()
			return nil, err
		}
	}
	for i := range n {
		ns := fmt.Sprintf("%s%d", l.prefix, i)
		ip := fmt.Sprintf("10.78.%d.%d", subnet, i+1)
		if err := run1("ip", "netns", "add", ns); err != nil {
			l.close()
			return nil, err
		}
		l.nodes, l.ips = append(l.nodes, ns), append(l.ips, ip)
		v := fmt.Sprintf("v%d", i)
		for _, s := range [][]string{
			{"ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", v, "netns", l.bridge},
			{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "-n", l.bridge, "link", "set", v, "master", "br0"},
			{"ip", "-n", l.bridge, "link", "set", v, "up"},
		} {
			if err := run1(s...); err != nil {
				l.close()
				return nil, err
			}
		}
	}
	return l, nil
}

// close deletes every namespace the lab made.
func (l *netLab) close() {
	for _, ns := range append(append([]string{}, l.nodes...), l.bridge) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

func (l *netLab) cut(i int) error {
	return run1("ip", "-n", l.bridge, "link", "set", fmt.Sprintf("v%d", i), "down")
}

func (l *netLab) heal(i int) error {
	return run1("ip", "-n", l.bridge, "link", "set", fmt.Sprintf("v%d", i), "up")
}

// mute drops node from's packets to node to; the returned func ends it.
// A blackhole route in from's namespace fails its sends locally; with
// wire, the packets are lost in the bridge instead (an htb class on the
// bridge's port to node to whose queue holds nothing: this kernel has no
// tc drop action or netem), so from's kernel retransmits as into a lossy
// network. One mute per destination at a time with wire.
func (l *netLab) mute(from, to int) (func() error, error) {
	if !l.wire {
		if err := run1("ip", "-n", l.nodes[from], "route", "add", "blackhole", l.ips[to]+"/32"); err != nil {
			return nil, err
		}
		return func() error { return run1("ip", "-n", l.nodes[from], "route", "del", "blackhole", l.ips[to]+"/32") }, nil
	}
	port := fmt.Sprintf("v%d", to)
	undo := func() error { return run1("tc", "-n", l.bridge, "qdisc", "del", "dev", port, "root") }
	for i, c := range [][]string{
		{"qdisc", "add", "dev", port, "root", "handle", "1:", "htb", "default", "1", "r2q", "100000"},
		{"class", "add", "dev", port, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"},
		{"class", "add", "dev", port, "parent", "1:", "classid", "1:2", "htb", "rate", "10gbit"},
		{"qdisc", "add", "dev", port, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0"},
		{"filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "src", l.ips[from] + "/32", "flowid", "1:2"},
	} {
		if err := run1(append([]string{"tc", "-n", l.bridge}, c...)...); err != nil {
			if i > 0 {
				_ = undo()
			}
			return nil, err
		}
	}
	return undo, nil
}

// wrap runs cmd inside node i's namespace (ip netns exec execs it, so the
// pid is the member's own).
func (l *netLab) wrap(i int, cmd *exec.Cmd) *exec.Cmd {
	w := exec.Command("ip", append([]string{"netns", "exec", l.nodes[i], cmd.Path}, cmd.Args[1:]...)...)
	w.Env = cmd.Env
	return w
}

// httpClient dials from inside node i's namespace: each dial runs on an
// OS thread locked for it, which joins the namespace and then returns to
// its own.
func (l *netLab) httpClient(i int) *http.Client {
	path := filepath.Join("/var/run/netns", l.nodes[i])
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// The thread joins the namespace for the dial and then goes
			// back. It must not simply end locked: a member started from
			// this thread earlier would get its parent-death signal.
			runtime.LockOSThread()
			back, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, err}
				return
			}
			defer back.Close()
			f, err := os.Open(path)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("join %s: %w", path, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			} // else the thread stays locked and ends with the goroutine
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: dial, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}}
}

// netGroup is a group whose member i runs on lab node nodes[i].
type netGroup struct {
	*group
	lab   *netLab
	nodes [size]int
}

// netFailoverRound applies fault to the healthy group's leader, measures
// until a survivor accepts a write, undoes the fault and waits until the
// group is healthy again.
func netFailoverRound(ctx context.Context, g *netGroup, fault func(leader int) (undo func() error, err error)) (killResult, error) {
	leader, _, err := g.waitHealthy(ctx, healthyLimit)
	if err != nil {
		return killResult{}, err
	}
	var survivors []int
	for i := range size {
		if i != leader {
			survivors = append(survivors, i)
		}
	}
	t0 := time.Now()
	undo, err := fault(leader)
	if err != nil {
		return killResult{}, err
	}
	at, ws, werr := firstWrite(ctx, g.b, survivors, failoverLimit)
	res := killResult{Writes: ws}
	switch {
	case werr == nil:
		res.Failover = at.Sub(t0)
	case ctx.Err() != nil:
		_ = undo()
		return res, ctx.Err()
	default:
		res.Miss = werr
	}
	t1 := time.Now()
	if err := undo(); err != nil {
		return res, err
	}
	if _, _, err := g.waitHealthy(ctx, healthyLimit); err != nil {
		return res, fmt.Errorf("after healing: %w", err)
	}
	res.Recovery = time.Since(t1)
	return res, nil
}

// hostLoss cuts the leader's link.
func (g *netGroup) hostLoss(leader int) (func() error, error) {
	n := g.nodes[leader]
	if err := g.lab.cut(n); err != nil {
		return nil, err
	}
	return func() error { return g.lab.heal(n) }, nil
}

// leaderMute drops everything the leader sends to the followers.
func (g *netGroup) leaderMute(leader int) (func() error, error) {
	var undos []func() error
	undo := func() error {
		var errs []error
		for _, u := range undos {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	for i := range size {
		if i == leader {
			continue
		}
		u, err := g.lab.mute(g.nodes[leader], g.nodes[i])
		if err != nil {
			_ = undo()
			return nil, err
		}
		undos = append(undos, u)
	}
	return undo, nil
}

// followerMuteRound drops one follower's packets to the leader for
// observe and counts the elections meanwhile (none has a cause: the leader
// and the other follower are a healthy majority).
func followerMuteRound(ctx context.Context, g *netGroup, observe time.Duration) (pauseResult, error) {
	leader, st, err := g.waitHealthy(ctx, healthyLimit)
	if err != nil {
		return pauseResult{}, err
	}
	follower := (leader + 1) % size
	w := watchTerms(ctx, g.group, st)
	undo, err := g.lab.mute(g.nodes[follower], g.nodes[leader])
	if err != nil {
		w.stop()
		return pauseResult{}, err
	}
	t := time.NewTimer(observe)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	uerr := undo()
	res := w.stop()
	if err := errors.Join(ctx.Err(), uerr); err != nil {
		return pauseResult{}, err
	}
	if _, _, err := g.waitHealthy(ctx, healthyLimit); err != nil {
		return res, fmt.Errorf("after the follower's route came back: %w", err)
	}
	return res, nil
}

// The network faults measured as failovers, in report order.
const (
	faultHostLoss   = "host loss (leader's link down)"
	faultLeaderMute = "one-way: the leader cannot send to the followers"
)

var netFaults = []string{faultHostLoss, faultLeaderMute}

// measureNet runs the network fault rounds, gear and etcd alternating,
// each system's three members on three nodes of one lab and the probes on
// a seventh.
func measureNet(ctx context.Context, cfg config, tmp, gearBin, etcdBin string, res *results, log *slog.Logger) error {
	// nodes: gear 0-2, etcd 3-5, the probes 6, gear's worker 7
	lab, err := newNetLab(2*size + 2)
	if err == nil {
		lab.wire = cfg.wire
	}
	if err != nil {
		res.netSkipped = err.Error()
		log.Warn("skipping the network fault rounds", "err", err)
		return nil
	}
	defer lab.close()
	client := lab.httpClient(2 * size)
	defer client.CloseIdleConnections()
	var groups []*netGroup
	defer func() {
		for _, g := range groups {
			g.close()
		}
	}()
	for k, name := range []string{"gear", "etcd"} {
		dir := filepath.Join(tmp, "net-"+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		var nodes [size]int
		var hosts, addrs []string
		for i := range size {
			nodes[i] = k*size + i
			hosts = append(hosts, lab.ips[nodes[i]])
			addrs = append(addrs, lab.ips[nodes[i]]+":3000")
		}
		wrap := func(i int, cmd *exec.Cmd) *exec.Cmd { return lab.wrap(nodes[i], cmd) }
		var b backend
		if name == "gear" {
			gb, err := newGearAt(gearBin, dir, client, addrs, wrap)
			if err != nil {
				return err
			}
			b = gb
		} else {
			b = newEtcdAt(etcdBin, dir, client, hosts, wrap)
		}
		g := &netGroup{group: newGroup(b, dir, log), lab: lab, nodes: nodes}
		groups = append(groups, g)
		if err := g.startAll(); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if _, _, err := g.waitHealthy(ctx, healthyLimit); err != nil {
			return err
		}
	}
	for r := range cfg.netRounds {
		for j := range groups {
			g := groups[(j+r)%len(groups)]
			name := g.b.name()
			for _, f := range netFaults {
				fault := g.hostLoss
				if f == faultLeaderMute {
					fault = g.leaderMute
				}
				kr, err := netFailoverRound(ctx, g, fault)
				if err != nil {
					return fmt.Errorf("%s %s round %d: %w", name, f, r, err)
				}
				if kr.Miss != nil {
					log.Warn("network fault round without failover", "system", name, "fault", f, "round", r, "err", kr.Miss)
					res.netMisses[f][name]++
				} else {
					res.netFailover[f][name] = append(res.netFailover[f][name], kr.Failover)
				}
				log.Debug("network fault round", "system", name, "fault", f, "round", r, "failover", kr.Failover, "recovery", kr.Recovery)
			}
			mr, err := followerMuteRound(ctx, g, cfg.muteObserve)
			if err != nil {
				return fmt.Errorf("%s follower mute round %d: %w", name, r, err)
			}
			res.mute[name] = append(res.mute[name], mr)
			log.Debug("follower mute round", "system", name, "round", r, "term_bumps", mr.TermBumps, "leader_moved", mr.LeaderMoved)
		}
		log.Info("network fault rounds", "done", r+1, "of", cfg.netRounds)
	}
	if cfg.flapRounds > 0 {
		gb, _ := groups[0].b.(*gearBackend)
		fr, err := flapRounds(ctx, groups[0], gb, 2*size+1, 2*size, cfg.flapRounds)
		res.flap = fr
		if err != nil {
			return fmt.Errorf("flapping worker: %w", err)
		}
		log.Info("flapping-worker rounds", "rounds", len(fr))
	}
	return nil
}

// writeNet prints the network fault tables.
func (r *results) writeNet(w io.Writer, cfg config) {
	fmt.Fprintf(w, "\n### Network faults (each member in its own network namespace, one bridge)\n\n")
	if r.netSkipped != "" {
		fmt.Fprintf(w, "Skipped: %s.\n", r.netSkipped)
		return
	}
	if cfg.netRounds <= 0 {
		fmt.Fprintf(w, "Skipped (-net-rounds 0).\n")
		return
	}
	cut := "blackhole routes in the sender's namespace (-cut route)"
	if cfg.wire {
		cut = "the sender's packets lost in the bridge (-cut wire)"
	}
	fmt.Fprintf(w, "%d rounds per system and fault, interleaved; from the fault to the first write accepted by a survivor (writes launched every %v, each with a %v timeout). One-way cuts: %s.\n\n", cfg.netRounds, writeEvery, writeTimeout, cut)
	var rows [][]string
	for _, f := range netFaults {
		sums := map[string]summary{}
		for _, s := range r.systems {
			sm := summarize(r.netFailover[f][s])
			sums[s] = sm
			rows = append(rows, []string{f, s, strconv.Itoa(sm.N), secs(sm.Min), secs(sm.Median), secs(sm.P90), secs(sm.Max), strconv.Itoa(r.netMisses[f][s])})
		}
		g, e := sums["gear"], sums["etcd"]
		rows = append(rows, []string{f, "gear/etcd", "", ratio(g.Min, e.Min), ratio(g.Median, e.Median), ratio(g.P90, e.P90), ratio(g.Max, e.Max), ""})
	}
	table(w, []string{"fault", "system", "rounds", "min", "median", "p90", "max", "no failover"}, rows)
	fmt.Fprintf(w, "\nOne follower cannot send to the leader for %v; the leader and the other follower are a healthy majority, so every election is one without cause:\n\n", cfg.muteObserve)
	rows = nil
	for _, s := range r.systems {
		var disrupted, moved int
		var bumps uint64
		for _, pr := range r.mute[s] {
			if pr.disrupted() {
				disrupted++
			}
			if pr.LeaderMoved {
				moved++
			}
			bumps += pr.TermBumps
		}
		rows = append(rows, []string{s, strconv.Itoa(len(r.mute[s])), strconv.Itoa(disrupted), strconv.FormatUint(bumps, 10), strconv.Itoa(moved)})
	}
	table(w, []string{"system", "rounds", "rounds with an election without cause", "term increases", "rounds where the leader moved"}, rows)

	if len(r.flap) > 0 {
		fmt.Fprintf(w, "\nA worker's link flaps (its bridge port stops forwarding for 0.5 s, then forwards for 0.5 s, for 10 s), gear only:\n\n")
		rows = nil
		for i, fr := range r.flap {
			rows = append(rows, []string{strconv.Itoa(i + 1), strconv.FormatBool(fr.Downed), strconv.Itoa(fr.Restarted), strconv.FormatUint(fr.Elections, 10)})
		}
		table(w, []string{"round", "worker downed", "executors restarted", "term increases"}, rows)
	}

	hl := summarize(r.netFailover[faultHostLoss]["gear"])
	causeless := 0
	for _, pr := range r.mute["gear"] {
		if pr.disrupted() {
			causeless++
		}
	}
	flapBad := 0
	for _, fr := range r.flap {
		if fr.Downed || fr.Restarted > 0 || fr.Elections > 0 {
			flapBad++
		}
	}
	pass := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	rows = [][]string{
		{"host loss: median <= 1.000 s", secs(hl.Median), pass(hl.N > 0 && hl.Median <= time.Second && r.netMisses[faultHostLoss]["gear"] == 0)},
		{"host loss: p90 <= 1.500 s", secs(hl.P90), pass(hl.N > 0 && hl.P90 <= 1500*time.Millisecond && r.netMisses[faultHostLoss]["gear"] == 0)},
		{"one follower cut off: no election", fmt.Sprintf("%d of %d rounds disrupted", causeless, len(r.mute["gear"])), pass(causeless == 0 && len(r.mute["gear"]) > 0)},
	}
	if cfg.flapRounds > 0 {
		rows = append(rows, []string{"flapping worker: not downed, no restart, no election", fmt.Sprintf("%d of %d rounds disturbed", flapBad, len(r.flap)), pass(flapBad == 0 && len(r.flap) > 0)})
	}
	fmt.Fprintf(w, "\ngear targets for network faults:\n\n")
	table(w, []string{"target", "measured", "result"}, rows)
}
