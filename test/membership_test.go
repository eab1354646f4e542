package test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// addMasterAddr picks a new master address on 127.0.0.(n+1).
func addMasterAddr(t *testing.T, c *testCluster) string {
	t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", len(c.masters)+1)
	addr := net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip)))
	c.masters = append(c.masters, addr)
	return addr
}

// startNewMaster starts master i (an address added with addMasterAddr)
// with a fresh data dir and extra flags.
func startNewMaster(c *testCluster, i int, extra ...string) *proc {
	host, port, _ := net.SplitHostPort(c.masters[i])
	args := append([]string{"master", "-ip", host, "-port", port, "-datadir", filepath.Join(c.dir, fmt.Sprintf("master%d", i))}, extra...)
	return c.start(fmt.Sprintf("master%d", i), args...)
}

// suffrages maps each master of `gear masters -json` to its suffrage.
func suffrages(c *testCluster) map[string]string {
	out := map[string]string{}
	for _, m := range c.mastersView() {
		out[m.Addr] = m.Suffrage
	}
	return out
}

// writer submits empty applications (acknowledged writes) until stopped,
// and returns the ids the masters acknowledged.
func writer(t *testing.T, c *testCluster, bundle string) (stop func() []string) {
	var mu sync.Mutex
	var acked []string
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			out, _, code := c.gear("app", "submit", bundle, "-executors", "0", "-quiet", "-name", "w")
			if code == 0 {
				mu.Lock()
				acked = append(acked, strings.TrimSpace(out))
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(acked)
	}
}

// Grow 3 -> 5 masters (one with -join, one listed in an edited gear.conf
// and added with `gear masters add`), then shrink 5 -> 3, while an app runs
// and a client writes: no acknowledged write is lost and no executor
// restarts. Then: a master restarted with a gear.conf that lists other
// masters than the stored membership warns with both lists; a removal that
// would lose the quorum is refused; a dead master's machine is replaced
// (remove the dead one, add a new one with a fresh data dir).
func TestMastersGrowShrinkReplace(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 1})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	id, pids := submitHello(t, c, 1)
	bundle := filepath.Join(t.TempDir(), "hello.tar.gz")
	if err := os.WriteFile(bundle, []byte(readFile(t, filepath.Join(repoRoot, "conf/examples/hello.tar.gz"))), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := writer(t, c, bundle)

	// 4th master: -join any master.
	m3 := addMasterAddr(t, c)
	startNewMaster(c, 3, "-join", c.masters[1])
	waitFor(t, 60*time.Second, m3+" a voter", func() bool { return suffrages(c)[m3] == "voter" })

	// 5th master: listed in its (edited) gear.conf, fresh data dir: it
	// must not bootstrap a group of its own, and waits to be added.
	m4 := addMasterAddr(t, c)
	conf5 := filepath.Join(c.dir, "gear5.conf")
	quoted := make([]string, len(c.masters))
	for i, m := range c.masters {
		quoted[i] = strconv.Quote(m)
	}
	if err := os.WriteFile(conf5, []byte("gear.cluster.masters = ["+strings.Join(quoted, ", ")+"]\ngear.log.level = debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p4 := startNewMaster(c, 4, "-conf", conf5)
	waitFor(t, 30*time.Second, m4+" waiting to be added", func() bool {
		return strings.Contains(readFile(t, p4.log), "gear masters add "+m4)
	})
	out := c.mustGear("masters", "add", m4)
	if !strings.Contains(out, "is a voter") {
		t.Fatalf("masters add %s: %s", m4, out)
	}
	// Both went through the non-voter stage: added, caught up, promoted.
	var logs string
	for i := range 3 {
		logs += readFile(t, c.procs[fmt.Sprintf("master%d", i)].log)
	}
	for _, m := range []string{m3, m4} {
		if !strings.Contains(logs, "added="+m) || !strings.Contains(logs, "promoted="+m) {
			t.Errorf("no master logged adding %s as a non-voter and promoting it", m)
		}
	}
	// Every master answers from its own view: a follower may apply the
	// last change a moment after the leader.
	waitFor(t, 10*time.Second, "5 voters", func() bool {
		s := suffrages(c)
		return len(s) == 5 && !slices.ContainsFunc(slices.Collect(maps.Values(s)), func(v string) bool { return v != "voter" })
	})

	// Shrink 5 -> 3: remove the two new masters (one at a time).
	for _, m := range []string{m3, m4} {
		out := c.mustGear("masters", "remove", m)
		if !strings.Contains(out, "removed master "+m) {
			t.Fatalf("masters remove %s: %s", m, out)
		}
	}
	c.kill("master3", syscall.SIGTERM)
	c.kill("master4", syscall.SIGTERM)
	waitFor(t, 10*time.Second, "the 3 first masters only", func() bool { return len(suffrages(c)) == 3 })
	acked := stop()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged while the group changed")
	}
	have := map[string]bool{}
	for _, a := range c.apps() {
		have[a.ID] = true
	}
	for _, a := range acked {
		if !have[a] {
			t.Errorf("acknowledged write (app %s) lost", a)
		}
	}
	if got := runningPIDs(c.app(id)); !maps.Equal(got, pids) {
		t.Errorf("executors restarted: pids %v, want %v", got, pids)
	}
	t.Logf("%d acknowledged writes kept across 3 -> 5 -> 3", len(acked))

	// A master restarted with a gear.conf that lists 5 masters, while the
	// stored membership has 3, says so.
	victim := "master2"
	if c.masters[2] == c.leader() {
		victim = "master1"
	}
	vi := int(victim[len(victim)-1] - '0')
	c.kill(victim, syscall.SIGTERM)
	host, port, _ := net.SplitHostPort(c.masters[vi])
	pv := c.start(victim, "master", "-ip", host, "-port", port, "-datadir", filepath.Join(c.dir, victim), "-conf", conf5)
	waitFor(t, 30*time.Second, "the edited gear.conf warning", func() bool {
		l := readFile(t, pv.log)
		return strings.Contains(l, "gear.cluster.masters differs from the membership stored") && !strings.Contains(l, "gear masters remove "+m3) &&
			strings.Contains(l, "gear masters add "+m3)
	})

	// Kill the restarted one for good: removing another voter would leave
	// 2 voters of which 1 is reachable: refused.
	c.kill(victim, syscall.SIGKILL)
	dead := c.masters[vi]
	var other string
	for i := range 3 {
		if i != vi && c.masters[i] != c.leader() {
			other = c.masters[i]
		}
	}
	_, errOut, code := c.gear("masters", "remove", other)
	if code == 0 || !strings.Contains(errOut, "would leave 2 voters") || !strings.Contains(errOut, "quorum of the new group needs 2") {
		t.Fatalf("removing %s with %s dead: exit %d, %s; want a refusal naming the quorum", other, dead, code, errOut)
	}

	// Replace the dead master's machine: remove it, add a new one with a
	// fresh data dir.
	c.mustGear("masters", "remove", dead)
	// This time `gear masters add` first, then the new machine starts with
	// the unchanged gear.conf (which does not list it) and no -join: it
	// finds itself in the group and is caught up.
	m5 := addMasterAddr(t, c)
	added := make(chan string, 1)
	go func() {
		out, errOut, _ := c.gear("masters", "add", m5)
		added <- out + errOut
	}()
	waitFor(t, 30*time.Second, m5+" listed as a non-voter", func() bool { return suffrages(c)[m5] == "nonvoter" })
	startNewMaster(c, 5)
	select {
	case out := <-added:
		if !strings.Contains(out, "is a voter") {
			t.Fatalf("masters add %s: %s", m5, out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("masters add %s did not return", m5)
	}
	var ms []cluster.Master
	waitFor(t, 30*time.Second, "a group of 3 with quorum", func() bool {
		ms = c.mastersView()
		return len(ms) == 3 && ms[0].Quorum
	})
	c.mustGear("app", "submit", bundle, "-executors", "0", "-quiet")
	if got := runningPIDs(c.app(id)); !maps.Equal(got, pids) {
		t.Errorf("executors restarted: pids %v, want %v", got, pids)
	}
}
