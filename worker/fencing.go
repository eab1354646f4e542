// Fencing: a worker cut off from the leader for stop-after-disconnect stops
// its executors, so that they never run twice once the masters reschedule
// them elsewhere (Nomad's stop_after_client_disconnect).

package worker

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/procs"
)

// untilFence is how long until this worker fences itself if no leader
// answers (a day when it will not: fenced already, or fencing is off).
func (w *Worker) untilFence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.opts.StopAfterDisconnect < 0 || w.fenced {
		return 24 * time.Hour
	}
	return w.opts.StopAfterDisconnect - time.Since(w.lastContact)
}

func (w *Worker) maybeFence() {
	if w.opts.StopAfterDisconnect < 0 {
		return
	}
	if masters := w.client.Masters(); !quorumPossible(masters) {
		// Every master that could form a quorum refuses connections: the
		// processes are down, not cut off from us, so no leader can exist
		// to reschedule these executors and stopping them would only turn
		// a master outage into an application outage.
		// A leader elected later gives workers a full timeout to report
		// in, so the fence clock restarts from now.
		if !w.quorumDownLogged {
			w.quorumDownLogged = true
			w.log.Warn("masters are down (connections refused), not unreachable: keeping executors running, since no leader can exist to run them elsewhere", "masters", masters)
		}
		w.mu.Lock()
		w.lastContact = time.Now()
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	since := time.Since(w.lastContact)
	if since < w.opts.StopAfterDisconnect || w.fenced {
		w.mu.Unlock()
		return
	}
	w.fenced = true
	execs := make([]*executor, 0, len(w.execs))
	for id, e := range w.execs {
		execs = append(execs, e)
		delete(w.execs, id)
		w.orphanStops[id] = true
	}
	adopted := w.adopted
	w.adopted = map[string]*procs.Process{}
	for id := range adopted {
		w.orphanStops[id] = true
	}
	w.mu.Unlock()
	if len(execs) == 0 && len(adopted) == 0 {
		return
	}
	w.log.Error("no contact with a leader: stopping every executor so that none runs twice once the masters reschedule them",
		"since", since.Round(time.Millisecond), "stop_after_disconnect", w.opts.StopAfterDisconnect, "executors", len(execs)+len(adopted))
	// The masters reschedule after the failover timeout; the stop must be
	// over by then, so the grace is what is left of it.
	grace := max(w.opts.FailoverTimeout-since-w.opts.HeartbeatInterval, 100*time.Millisecond)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		// Once gone, an executor may be started again (the leader may
		// still assign it here when contact comes back).
		gone := func(id string) {
			w.mu.Lock()
			delete(w.orphanStops, id)
			w.mu.Unlock()
			w.kickHeartbeat()
		}
		var wg sync.WaitGroup
		for _, e := range execs {
			wg.Add(1)
			go func() { defer wg.Done(); e.stopWithin(ctx); gone(e.id) }()
		}
		for id, p := range adopted {
			wg.Add(1)
			go func() { defer wg.Done(); stopWithin(ctx, p); gone(id) }()
		}
		wg.Wait()
	}()
}

// quorumPossible reports whether a quorum of masters might be alive
// somewhere: only a master whose port actively refuses connections is
// known to be down (a partitioned or frozen one just does not answer).
func quorumPossible(masters []string) bool {
	refused := 0
	for _, m := range masters {
		c, err := net.DialTimeout("tcp", m, 300*time.Millisecond)
		if err == nil {
			_ = c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused++
		}
	}
	return len(masters)-refused >= len(masters)/2+1
}
