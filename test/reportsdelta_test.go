package test

import (
	"maps"
	"syscall"
	"testing"
	"time"
)

// Workers send the leader only the executor reports that changed since the
// list it acknowledged. A new leader holds no such list: an executor that
// restarts after a failover must still show up there with its new pid
// (the worker lists every report again), and one that restarts before it
// too (a delta the old leader applied).
func TestReportsReachANewLeader(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 1})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	id, pids := submitHello(t, c, 2)
	var victim string
	for e := range pids {
		victim = e
		break
	}
	// restarted kills victim's process and waits until the leader reports
	// it running again under another pid; the others keep theirs.
	restarted := func(when string) map[string]int {
		t.Helper()
		old := pids[victim]
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s (pid %d): %v", victim, old, err)
		}
		var now map[string]int
		waitFor(t, 20*time.Second, when+": "+victim+" RUNNING again under a new pid", func() bool {
			now = runningPIDs(c.app(id))
			return len(now) == len(pids) && now[victim] != 0 && now[victim] != old
		})
		killPIDsAtCleanup(t, now)
		for e, pid := range pids {
			if e != victim && now[e] != pid {
				t.Fatalf("%s: %s changed pid %d -> %d, only %s was killed", when, e, pid, now[e], victim)
			}
		}
		return now
	}
	pids = restarted("before the failover")
	c.kill(c.masterName(leader), syscall.SIGKILL)
	waitFor(t, 10*time.Second, "a new leader", func() bool { next := c.leader(); return next != "" && next != leader })
	waitFor(t, 10*time.Second, "the app RUNNING under the new leader with the same pids", func() bool {
		return maps.Equal(runningPIDs(c.app(id)), pids)
	})
	restarted("after the failover")
}
