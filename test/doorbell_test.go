package test

import (
	"fmt"
	"testing"
	"time"
)

// A placement reaches the worker through the leader's doorbell, not at
// its next heartbeat: with heartbeats 8 s apart, each of three apps
// submitted one after the other starts well within 8 s. Without the
// doorbell each would wait for a heartbeat (0-8 s), and three starts in
// a row under 3.5 s each would be luck (about 1 in 12).
func TestPlacementReachesWorkerBeforeItsHeartbeat(t *testing.T) {
	c, out := workerCluster(t, "gear.worker.heartbeat-interval = 8s\ngear.failover.timeout = 20s")
	for i := range 3 {
		bundle := testBundle(t, out, fmt.Sprintf("bell%d", i), `command = ["/bin/sleep", "1000"]`, "instances = 1")
		start := time.Now()
		id := c.submit(bundle)
		a := c.waitRunning(id, 1, 30*time.Second)
		if took := a.Executors[0].StartedAt.Sub(start); took > 3500*time.Millisecond {
			t.Fatalf("app %d's executor started %v after the submit began, with heartbeats 8 s apart: the placement waited for a heartbeat", i, took.Round(time.Millisecond))
		} else {
			t.Logf("app %s started %v after the submit began", id, took.Round(time.Millisecond))
		}
		c.mustGear("app", "kill", id)
	}
}
