package test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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

// Steady heartbeats neither repeat the assignments nor the executor
// reports: with 20 executors running, a heartbeat and its reply stay far
// below what listing them takes (about 3 KiB of reports and 15 KiB of
// assignments), by the leader's gear_heartbeat_bytes_total.
func TestSteadyHeartbeatsAreSmall(t *testing.T) {
	c, out := workerCluster(t, "gear.metrics.open = true")
	id := c.submit(testBundle(t, out, "steady", `command = ["/bin/sleep", "1000"]`, "instances = 20"))
	c.waitRunning(id, 20, 60*time.Second)
	read := func() (beats, in, outb float64) {
		t.Helper()
		resp, err := http.Get("http://" + c.masters[0] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			name, val, _ := strings.Cut(line, " ")
			v, _ := strconv.ParseFloat(val, 64)
			switch name {
			case `gear_heartbeats_total{result="ok"}`:
				beats = v
			case `gear_heartbeat_bytes_total{direction="received"}`:
				in = v
			case `gear_heartbeat_bytes_total{direction="sent"}`:
				outb = v
			}
		}
		return
	}
	var b0, i0, o0 float64
	waitFor(t, 30*time.Second, "a steady second of heartbeats (the start's reports all acknowledged)", func() bool {
		b0, i0, o0 = read()
		time.Sleep(time.Second) // a window to measure over, not a wait for a condition
		b1, i1, o1 := read()
		if b1-b0 < 2 {
			return false
		}
		perIn, perOut := (i1-i0)/(b1-b0), (o1-o0)/(b1-b0)
		t.Logf("%.0f heartbeats: %.0f bytes in, %.0f bytes out each", b1-b0, perIn, perOut)
		return perIn < 1200 && perOut < 1200
	})
	c.mustGear("app", "kill", id)
}
