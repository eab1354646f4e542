package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/datadir"
)

// netLab is a private network made of network namespaces: one namespace
// per node, each joined by a veth pair to a bridge that lives in one more
// namespace. Cutting a node's veth (in the bridge namespace) partitions it.
// Only the test's own 10.77.x.0/24 addresses inside its namespaces are used.
type netLab struct {
	t      *testing.T
	prefix string
	bridge string
	nodes  []string // namespace per node
	ips    []string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	needProgram(t, "ip")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network namespaces need root")
		}
		t.Skip("network namespaces need root")
	}
	id := datadir.RandomID()[:6]
	l := &netLab{t: t, prefix: "gear" + id, bridge: "gear" + id + "br"}
	t.Cleanup(l.destroy)
	ipCmd(t, "netns", "add", l.bridge)
	ipCmd(t, "-n", l.bridge, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", l.bridge, "link", "set", "br0", "up")
	subnet := 10 + int(id[0])%200
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("%s%d", l.prefix, i)
		ip := fmt.Sprintf("10.77.%d.%d", subnet, i+1)
		ipCmd(t, "netns", "add", ns)
		l.nodes, l.ips = append(l.nodes, ns), append(l.ips, ip)
		ipCmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", fmt.Sprintf("v%d", i), "netns", l.bridge)
		ipCmd(t, "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", l.bridge, "link", "set", fmt.Sprintf("v%d", i), "master", "br0")
		ipCmd(t, "-n", l.bridge, "link", "set", fmt.Sprintf("v%d", i), "up")
	}
	return l
}

// cut isolates node i from every other node; heal undoes it.
func (l *netLab) cut(i int)  { ipCmd(l.t, "-n", l.bridge, "link", "set", fmt.Sprintf("v%d", i), "down") }
func (l *netLab) heal(i int) { ipCmd(l.t, "-n", l.bridge, "link", "set", fmt.Sprintf("v%d", i), "up") }

func (l *netLab) destroy() {
	for _, ns := range append(append([]string{}, l.nodes...), l.bridge) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// command runs the gear binary inside node i's namespace.
func (l *netLab) command(i int, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.nodes[i], gearBin}, args...)...)
}

// A leader cut off by a network partition (neither answering nor refusing,
// so only raft's own timers can tell) is replaced within the failover
// timeout; the minority side refuses writes and says why; after the
// partition heals, the old leader follows the new one and forwards writes
// to it again.
func TestPartitionedLeader(t *testing.T) {
	lab := newNetLab(t, 4) // 3 masters + 1 node for the CLI
	dir := t.TempDir()
	var masters []string
	for i := 0; i < 3; i++ {
		masters = append(masters, lab.ips[i]+":3000")
	}
	conf := filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("gear.cluster.masters = [%q, %q, %q]\ngear.log.level = debug\n", masters[0], masters[1], masters[2])), 0o644); err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = p.Process.Kill()
			}
		}
		if t.Failed() {
			for i := 0; i < 3; i++ {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("master%d.log", i)))
				lines := strings.Split(string(b), "\n")
				t.Logf("---- master%d log (tail) ----\n%s", i, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	for i := 0; i < 3; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("master%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := lab.command(i, "master", "-ip", lab.ips[i], "-port", "3000", "-conf", conf, "-datadir", filepath.Join(dir, fmt.Sprintf("m%d", i)))
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	// gearIn runs the CLI from node i against the given masters.
	gearIn := func(i int, master string, args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", lab.nodes[i], gearBin, "-conf", conf, "-master", master}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	view := func(i int, master string) []cluster.Master {
		out, _, code := gearIn(i, master, "masters", "-json")
		if code != 0 {
			return nil
		}
		var ms []cluster.Master
		_ = json.Unmarshal([]byte(out), &ms)
		return ms
	}
	leaderSeenFrom := func(i int, master string) string {
		for _, m := range view(i, master) {
			if m.State == "leader" {
				return m.Addr
			}
		}
		return ""
	}
	all := strings.Join(masters, ",")
	var leader string
	waitFor(t, 40*time.Second, "a leader", func() bool { leader = leaderSeenFrom(3, all); return leader != "" })
	li := 0
	for i, m := range masters {
		if m == leader {
			li = i
		}
	}
	lab.cut(li)
	cutAt := time.Now()
	var others []string
	for i, m := range masters {
		if i != li {
			others = append(others, m)
		}
	}
	var next string
	waitFor(t, 6*time.Second, "the majority to elect a new leader within the failover timeout", func() bool {
		next = leaderSeenFrom(3, strings.Join(others, ","))
		return next != "" && next != leader
	})
	t.Logf("new leader %s %v after the cut", next, time.Since(cutAt).Round(time.Millisecond))
	if _, errOut, code := gearIn(3, strings.Join(others, ","), "app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet"); code != 0 {
		t.Fatalf("the majority refused a write: %s", errOut)
	}
	// The isolated old leader must refuse writes and explain.
	waitFor(t, 15*time.Second, "the isolated master to refuse writes", func() bool {
		_, errOut, code := gearIn(li, leader, "app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
		return code != 0 && strings.Contains(errOut, "quorum")
	})
	lab.heal(li)
	waitFor(t, 30*time.Second, "the old leader to follow the new one after the heal", func() bool {
		for _, m := range view(3, all) {
			if m.Addr == leader {
				return m.State == "follower" && m.Leader != "" && m.Leader != leader
			}
		}
		return false
	})
	waitFor(t, 15*time.Second, "the old leader to forward a write to the new one", func() bool {
		_, _, code := gearIn(li, leader, "app", "scale", "1", "0")
		return code == 0
	})
	out, _, _ := gearIn(3, all, "app", "list", "-json")
	var apps []cluster.App
	_ = json.Unmarshal([]byte(out), &apps)
	if len(apps) != 1 {
		t.Fatalf("want exactly the one app submitted on the majority side, got %d", len(apps))
	}
}
