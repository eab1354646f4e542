package test

// Draining a worker with real processes.

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// gear workers drain moves the worker's executor to the other worker:
// its replacement starts there and the old process is stopped only once
// the replacement runs, so the app never has fewer than its two executors
// running. The drained worker's /ecv says it drains (reason=draining); gear workers eligible
// ends it and new executors land on it again.
func TestDrainWorker(t *testing.T) {
	out := t.TempDir()
	t.Cleanup(func() { sweepExecutors(t, out) })
	c := newCluster(t, clusterOpts{masters: 1, workers: 2})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	var ws []cluster.Worker
	// Both in the gossip pool too, or the leader places both executors
	// on the one that joined first.
	waitFor(t, 20*time.Second, "both workers to register and join the pool", func() bool { ws = c.placeableWorkers(); return len(ws) == 2 })
	id := c.submit(testBundle(t, out, "drainme",
		`command = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]`, "instances = 2"))
	a := c.waitRunning(id, 2, 30*time.Second)
	// The one executor on the first worker is the one to move.
	var moving cluster.Executor
	for _, e := range a.Executors {
		if e.Worker == ws[0].ID {
			moving = e
		}
	}
	if moving.ID == "" {
		t.Fatalf("no executor on %s: %+v", ws[0].ID, a.Executors)
	}
	ecv := func(addr string) string {
		resp, err := http.Get("http://" + addr + "/ecv")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := ecv(ws[0].Addr); !strings.Contains(got, "status=AVAILABLE") {
		t.Fatalf("/ecv before the drain: %q", got)
	}

	drainOut := c.mustGear("workers", "drain", ws[0].ID, "-deadline", "1m")
	if !strings.Contains(drainOut, moving.ID) {
		t.Errorf("workers drain printed %q, want it to list %s", drainOut, moving.ID)
	}
	// Until the move is done, both executors run with live processes at
	// every look.
	waitFor(t, 40*time.Second, moving.ID+" moved to "+ws[1].ID+" and the old process gone", func() bool {
		a := c.appInfo(id)
		if a == nil {
			return false
		}
		pids := runningPIDs(a)
		if len(pids) != 2 {
			t.Fatalf("only %d executor(s) running during the drain: %+v", len(pids), a.Executors)
		}
		for e, pid := range pids {
			if !alive(pid) {
				t.Fatalf("executor %s RUNNING with pid %d, which is not alive", e, pid)
			}
		}
		i := slices.IndexFunc(a.Executors, func(e cluster.Executor) bool { return e.ID == moving.ID })
		return a.Executors[i].Worker == ws[1].ID && a.Executors[i].Replacement == nil && !alive(moving.PID)
	})
	waitFor(t, 10*time.Second, "the drained worker's /ecv to say it drains (UNAVAILABLE, reason=draining)", func() bool {
		e := ecv(ws[0].Addr)
		return strings.Contains(e, "ServeTraffic=false") && strings.Contains(e, "reason=draining")
	})
	if s := c.mustGear("workers"); !strings.Contains(s, ws[0].ID+" (draining)") {
		t.Errorf("workers does not show the drain:\n%s", s)
	}
	// Nothing new goes there.
	c.mustGear("app", "scale", id, "3")
	a = c.waitRunning(id, 3, 30*time.Second)
	for _, e := range a.Executors {
		if e.Worker == ws[0].ID {
			t.Fatalf("executor %s placed on the draining worker", e.ID)
		}
	}

	c.mustGear("workers", "eligible", ws[0].ID)
	waitFor(t, 10*time.Second, "/ecv AVAILABLE again", func() bool { return strings.Contains(ecv(ws[0].Addr), "status=AVAILABLE") })
	c.mustGear("app", "scale", id, "4")
	a = c.waitRunning(id, 4, 30*time.Second)
	if !slices.ContainsFunc(a.Executors, func(e cluster.Executor) bool { return e.Worker == ws[0].ID }) {
		t.Errorf("after eligible, the fourth executor is not on %s: %+v", ws[0].ID, a.Executors)
	}
	var pids []int
	for _, pid := range runningPIDs(a) {
		pids = append(pids, pid)
	}
	c.killApp(id, pids)
}

// With nowhere else to go, a drained worker's executor keeps running
// until the deadline, is stopped then (with the reason), and comes back
// when the worker is eligible again.
func TestDrainDeadline(t *testing.T) {
	c, out := workerCluster(t, "")
	ws := c.aliveWorkers()
	id := c.submit(testBundle(t, out, "stuck", `command = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]`))
	a := c.waitRunning(id, 1, 30*time.Second)
	pid := a.Executors[0].PID
	start := time.Now()
	c.mustGear("workers", "drain", ws[0].ID, "-deadline", "3s")
	waitFor(t, 30*time.Second, "the executor stopped at the deadline", func() bool {
		a = c.appInfo(id)
		if a == nil {
			return false
		}
		if alive(pid) && a.Executors[0].Worker == "" {
			return false // unplaced, process not gone yet
		}
		return !alive(pid) && a.Executors[0].Worker == ""
	})
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("stopped %v after the drain, before its 3s deadline", d)
	}
	if e := a.Executors[0]; e.State != cluster.Pending || !strings.Contains(e.LastError, "every alive worker is draining") {
		t.Fatalf("executor %s %q, want PENDING with the reason", e.State, e.LastError)
	}
	if ev := c.mustGear("events"); !strings.Contains(ev, "drained and its deadline passed") {
		t.Errorf("no event says why it stopped:\n%s", ev)
	}
	c.mustGear("workers", "eligible", ws[0].ID)
	a = c.waitRunning(id, 1, 30*time.Second)
	c.killApp(id, pidsOf(a))
}
