package test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// killPIDsAtCleanup kills executor processes a test orphaned on purpose
// (e.g. by kill -9 of their worker).
func killPIDsAtCleanup(t *testing.T, pids map[string]int) {
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// submitHello submits the example bundle with n unpinned executors.
func submitHello(t *testing.T, c *testCluster, n int) (string, map[string]int) {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "hello.tar.gz")
	hello := readFile(t, filepath.Join(repoRoot, "conf/examples/hello.tar.gz"))
	if err := os.WriteFile(bundle, []byte(hello), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(c.mustGear("app", "submit", bundle, "-executors", strconv.Itoa(n), "-quiet"))
	var pids map[string]int
	waitFor(t, 40*time.Second, "app "+id+" RUNNING", func() bool {
		pids = runningPIDs(c.app(id))
		return len(pids) == n
	})
	killPIDsAtCleanup(t, pids)
	return id, pids
}

// 3 masters + 2 workers: kill -9 the leader; a new one is elected within
// the failover timeout, the app is still listed and its executors were not
// restarted; the old leader comes back as a follower.
func TestLeaderKilled(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 2})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	id, pids := submitHello(t, c, 2)

	c.kill(c.masterName(leader), syscall.SIGKILL)
	start := time.Now()
	var next string
	waitFor(t, 6*time.Second, "a new leader within the failover timeout (6s)", func() bool {
		next = c.leader()
		return next != "" && next != leader
	})
	t.Logf("new leader %s after %v", next, time.Since(start).Round(time.Millisecond))
	// The new leader must have heard from the workers and must not have
	// restarted anything.
	waitFor(t, 10*time.Second, "the app to be RUNNING under the new leader", func() bool {
		return runningPIDs(c.app(id)) != nil
	})
	if got := runningPIDs(c.app(id)); !maps.Equal(got, pids) {
		t.Fatalf("executor PIDs changed across failover: before %v, after %v", pids, got)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("executor pid %d died during failover", pid)
		}
	}
	// A write goes through a follower to the new leader.
	c.mustGear("app", "scale", id, "2")

	for i, m := range c.masters {
		if m == leader {
			c.startMaster(i)
		}
	}
	waitFor(t, 20*time.Second, "the old leader to rejoin as a follower", func() bool {
		for _, m := range c.mastersView() {
			if m.Addr == leader {
				return m.State == "follower" && m.Leader == next
			}
		}
		return false
	})
}

// 5 masters: two down, writes work; three down, writes are refused with a
// clear error; one back, writes work again.
func TestQuorumOfFive(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 5, workers: 0})
	var leader string
	waitFor(t, 40*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	// Kill two followers first, then the leader, so the survivors must
	// elect without their old leader.
	var down []int
	for i, m := range c.masters {
		if m != leader && len(down) < 2 {
			c.kill(fmt.Sprintf("master%d", i), syscall.SIGKILL)
			down = append(down, i)
		}
	}
	c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
	li := 0
	for i, m := range c.masters {
		if m == leader {
			li = i
		}
	}
	c.kill(fmt.Sprintf("master%d", li), syscall.SIGKILL)
	down = append(down, li)
	out, errOut, code := c.gear("app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
	if code == 0 {
		t.Fatalf("a submit with 2 of 5 masters up succeeded: %s", out)
	}
	if !strings.Contains(errOut, "quorum") || !strings.Contains(errOut, "cannot reach") {
		t.Fatalf("the refusal does not explain the lost quorum:\n%s", errOut)
	}
	c.startMaster(down[0])
	waitFor(t, 30*time.Second, "writes to be accepted with 3 of 5 masters", func() bool {
		_, _, code := c.gear("app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
		return code == 0
	})
	if n := len(c.apps()); n != 2 {
		t.Fatalf("want 2 apps (the refused submit must not exist), got %d", n)
	}
}

// Stopping every master and starting them again keeps every application,
// and its executors keep running under the same PIDs.
func TestAllMastersRestart(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 1})
	waitFor(t, 30*time.Second, "a leader", func() bool { return c.leader() != "" })
	id, pids := submitHello(t, c, 1)
	for i := range c.masters {
		c.kill(fmt.Sprintf("master%d", i), syscall.SIGTERM)
	}
	for i := range c.masters {
		c.startMaster(i) // no extra flags: membership is on disk
	}
	waitFor(t, 30*time.Second, "a leader after the full restart", func() bool { return c.leader() != "" })
	waitFor(t, 20*time.Second, "the app to be back and RUNNING", func() bool { return runningPIDs(c.app(id)) != nil })
	if got := runningPIDs(c.app(id)); !maps.Equal(got, pids) {
		t.Fatalf("executors restarted across a full master restart: before %v, after %v", pids, got)
	}
}

// A worker that dies: after the failover timeout its executors run on
// another worker.
func TestWorkerLost(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 2, conf: "gear.failover.timeout = 2s"})
	waitFor(t, 20*time.Second, "a leader", func() bool { return c.leader() != "" })
	waitFor(t, 20*time.Second, "two workers", func() bool {
		out, _, _ := c.gear("workers", "-json")
		return strings.Count(out, `"alive": true`) == 2
	})
	id, pids := submitHello(t, c, 2)
	app := c.app(id)
	victim := app.Executors[0].Worker
	var victimName string
	for i := 0; i < 2; i++ {
		if strings.TrimSpace(readFile(t, filepath.Join(c.dir, fmt.Sprintf("worker%d", i), "worker-id"))) == victim {
			victimName = fmt.Sprintf("worker%d", i)
		}
	}
	if victimName == "" {
		t.Fatalf("cannot find worker %s", victim)
	}
	c.kill(victimName, syscall.SIGKILL)
	killed := time.Now()
	waitFor(t, 20*time.Second, "every executor to run on the surviving worker", func() bool {
		a := c.app(id)
		if runningPIDs(a) == nil {
			return false
		}
		for _, e := range a.Executors {
			if e.Worker == victim {
				return false
			}
		}
		return true
	})
	// The timeout runs from the worker's last heartbeat, which came up to
	// one heartbeat interval (250ms) before the kill.
	if d := time.Since(killed); d < 2*time.Second-300*time.Millisecond {
		t.Fatalf("executors moved after %v, before the 2s failover timeout (less one heartbeat)", d)
	}
	killPIDsAtCleanup(t, runningPIDs(c.app(id)))
	_ = pids
}

// A configured master that is unreachable is reported clearly at start.
func TestUnreachableMasterReported(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "gear.conf")
	masters := fmt.Sprintf(`gear.cluster.masters = ["127.0.0.1:%d", "127.0.0.1:%d", "no-such-host.invalid:3000"]`, port, deadPort)
	if err := os.WriteFile(conf, []byte(masters+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, dir: dir, conf: conf, procs: map[string]*proc{}}
	t.Cleanup(c.stopAll)
	p := c.start("master0", "master", "-ip", "127.0.0.1", "-port", strconv.Itoa(port), "-datadir", filepath.Join(dir, "m0"))
	waitFor(t, 20*time.Second, "the start-up report of unreachable masters", func() bool {
		log := readFile(t, p.log)
		return strings.Contains(log, "no-such-host.invalid:3000") && strings.Contains(log, "does not resolve") &&
			strings.Contains(log, fmt.Sprintf("127.0.0.1:%d", deadPort)) && strings.Contains(log, "unreachable")
	})
	_ = cluster.Running
}

// A worker cut off from the masters (here: the only master is frozen, so
// connections hang instead of being refused) stops its executors before the
// masters could reschedule them, and runs them again once the leader is
// back and places them.
func TestWorkerFencesWhenCutOff(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: "gear.failover.timeout = 2s"})
	waitFor(t, 20*time.Second, "a leader", func() bool { return c.leader() != "" })
	id, pids := submitHello(t, c, 1)
	var pid int
	for _, p := range pids {
		pid = p
	}
	c.kill("master0", syscall.SIGSTOP)
	frozen := time.Now()
	waitFor(t, 10*time.Second, "the cut-off worker to stop its executor", func() bool { return !alive(pid) })
	stoppedAfter := time.Since(frozen)
	if stoppedAfter >= 2*time.Second {
		t.Fatalf("the executor was stopped %v after the cut-off, not before the 2s failover timeout", stoppedAfter)
	}
	t.Logf("fenced %v after the cut-off", stoppedAfter.Round(time.Millisecond))
	if !strings.Contains(readFile(t, c.procs["worker0"].log), "stopping every executor") {
		t.Fatal("the worker did not log why it stopped its executors")
	}
	c.kill("master0", syscall.SIGCONT)
	waitFor(t, 30*time.Second, "the app to run again after the master is back", func() bool {
		got := runningPIDs(c.app(id))
		for _, p := range got {
			return p != pid && alive(p)
		}
		return false
	})
	killPIDsAtCleanup(t, runningPIDs(c.app(id)))
}
