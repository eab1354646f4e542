package test

// Rescheduling with real processes: an executor that gives up on one
// worker is placed on the other by its reschedule policy.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// A program that crashes on one worker only (it runs where it finds the
// worker's ok-marker) gives up there, is rescheduled after the policy's
// delay to the other worker, and runs: the app is RUNNING, never FAILED,
// and the attempt is in app info and in the events.
func TestRescheduleToAnotherWorker(t *testing.T) {
	out := t.TempDir()
	t.Cleanup(func() { sweepExecutors(t, out) })
	c := newCluster(t, clusterOpts{masters: 1, workers: 2, conf: "gear.executor.backoff-min = 100ms\ngear.executor.backoff-max = 200ms\n"})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	var ids []string
	waitFor(t, 20*time.Second, "both workers to register and join the pool", func() bool {
		ws := c.placeableWorkers()
		ids = ids[:0]
		for _, w := range ws {
			ids = append(ids, w.ID)
		}
		return len(ids) == 2
	})
	// The executor crash loops on whichever worker it is placed on first
	// (the bad one); the other gets the marker it needs to run (the good
	// one) as soon as that placement is known, so the reschedule finds it.
	id := c.submit(testBundle(t, out, "picky",
		`command = ["/bin/sh", "-c", "[ -e \"$GEAR_TEST_OUT/ok-$GEAR_WORKER_ID\" ] || exec ./crash.sh; exec ./server.sh"]`,
		`restart = "always"`, "min-uptime = 1s", "max-restarts = 1",
		`reschedule { attempts = 1, delay = 1s, delay-function = "constant" }`))
	start := time.Now()
	var bad, good string
	waitFor(t, 20*time.Second, "the first placement", func() bool {
		a := c.appInfo(id)
		if a == nil || len(a.Executors) != 1 || a.Executors[0].Worker == "" {
			return false
		}
		bad = a.Executors[0].Worker
		return true
	})
	good = ids[0]
	if good == bad {
		good = ids[1]
	}
	if err := os.WriteFile(filepath.Join(out, "ok-"+good), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var a *cluster.App
	sawFailed := false
	waitFor(t, 60*time.Second, "app "+id+" RUNNING on worker "+good, func() bool {
		a = c.appInfo(id)
		if a == nil || len(a.Executors) != 1 {
			return false
		}
		sawFailed = sawFailed || a.State == cluster.AppFailed
		return a.State == cluster.AppRunning && a.Executors[0].Worker == good
	})
	t.Logf("RUNNING on %s %v after the submit", good, time.Since(start).Round(time.Millisecond))
	if sawFailed {
		t.Errorf("the app was FAILED on the way, with a reschedule attempt left")
	}
	e := a.Executors[0]
	if len(e.Reschedules) != 1 || e.Reschedules[0].From != bad || !strings.Contains(e.Reschedules[0].Reason, "crash loop") ||
		e.Reschedules[0].NotBefore.Sub(e.Reschedules[0].Time) != time.Second {
		t.Fatalf("reschedules %+v, want one off %s after a crash loop, with a 1s delay", e.Reschedules, bad)
	}
	// The event of the move says why.
	found := false
	for _, line := range strings.Split(strings.TrimSpace(c.mustGear("events", "-json")), "\n") {
		var ev cluster.Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Executor == e.ID && ev.From == string(cluster.Failed) &&
			ev.State == string(cluster.Pending) && strings.Contains(ev.Reason, "rescheduled (attempt 1 of 1) after it gave up on worker "+bad) {
			found = true
		}
	}
	if !found {
		t.Errorf("no executor event for the reschedule in:\n%s", c.mustGear("events"))
	}
	if info := c.mustGear("app", "info", id); !strings.Contains(info, "rescheduled "+e.ID+": attempt 1") {
		t.Errorf("app info does not list the attempt:\n%s", info)
	}

	// Now it crashes on the good worker too: attempts spent, FAILED for
	// good, and it stays there.
	if err := os.Remove(filepath.Join(out, "ok-"+good)); err != nil {
		t.Fatal(err)
	}
	c.mustGear("app", "restart", id)
	waitFor(t, 60*time.Second, "app "+id+" FAILED with its attempts spent", func() bool {
		a = c.appInfo(id)
		return a != nil && a.State == cluster.AppFailed
	})
	if e := a.Executors[0]; e.Worker != good || len(e.Reschedules) != 1 {
		t.Fatalf("executor %+v: want FAILED on %s, not rescheduled again", e, good)
	}
	c.killApp(id, nil)
}
