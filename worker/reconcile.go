// Reconciling the leader's assignments with the executors this worker runs,
// and adopting the ones a previous run of the worker left behind.

package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
)

// reconcile starts what is assigned and not running, restarts what runs an
// older generation and stops what is no longer assigned.
func (w *Worker) reconcile(as []cluster.Assignment) {
	want := map[string]cluster.Assignment{}
	for _, a := range as {
		want[a.Executor.ID] = a
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, e := range w.execs {
		a, ok := want[id]
		replaced := ok && !e.isStopping() && e.otherBundle(a)
		if replaced {
			// gear app update or rollback: another bundle (or command).
			// The process goes; the next round starts the new one.
			w.log.Info("executor assigned another bundle version; replacing it", "executor", id, "bundle", a.Bundle.Digest)
		}
		if (!ok || replaced) && !e.isStopping() {
			// It stays listed (STOPPING) until its process is gone, so
			// the leader sees STOPPED only when it really is.
			if !replaced {
				w.log.Info("executor no longer assigned here; stopping it", "executor", id)
			}
			e.markStopping()
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				e.stop(false)
				w.listeners.release(id)
				// Still listed (STOPPING): nothing starts it again
				// until it is deleted below.
				w.removeWorkDir(id) // no longer assigned here
				w.mu.Lock()
				if w.execs[id] == e {
					delete(w.execs, id)
				}
				w.mu.Unlock()
				w.kickHeartbeat()
			}()
		}
	}
	for id, a := range want {
		e, ok := w.execs[id]
		if ok && e.isStopping() || w.orphanStops[id] {
			continue // assigned again while stopping: start it once it is gone
		}
		if !ok {
			if err := w.checkCPUs(a); err != nil {
				// Report it FAILED with the reason rather than leave the
				// leader waiting for an executor that will never start.
				w.log.Error("refusing placement", "executor", id, "err", err)
				e = newExecutor(w, a, nil)
				e.state, e.lastErr = cluster.Failed, "worker "+w.id+" refused the placement: "+err.Error()
				close(e.done)
				w.execs[id] = e
				continue
			}
			e = newExecutor(w, a, w.adopted[id])
			delete(w.adopted, id)
			w.execs[id] = e
			w.wg.Add(1)
			go func() { defer w.wg.Done(); e.run() }()
			continue
		}
		e.update(a)
	}
	// Orphans found at start that the leader does not assign here.
	for id, p := range w.adopted {
		w.log.Info("stopping an orphan executor the leader no longer assigns here", "executor", id, "pid", p.PID())
		delete(w.adopted, id)
		w.orphanStops[id] = true
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), w.stopTimeout()+time.Second)
			defer cancel()
			stopWithin(ctx, p)
			w.mu.Lock()
			delete(w.orphanStops, id)
			w.mu.Unlock()
			w.kickHeartbeat()
		}()
	}
}

// checkCPUs refuses a placement on cores this worker does not hand out or
// that another executor here holds exclusively. Called with mu held.
func (w *Worker) checkCPUs(a cluster.Assignment) error {
	for _, c := range a.Executor.CPUs {
		if !slices.Contains(w.opts.CPUs, c) {
			return fmt.Errorf("core %d is not one this worker hands out %v", c, w.opts.CPUs)
		}
		if a.Process.Shared {
			continue
		}
		for _, e := range w.execs {
			if !e.shared() && slices.Contains(e.cpus(), c) {
				return fmt.Errorf("core %d is held by executor %s", c, e.id)
			}
		}
	}
	return nil
}

// adoptOrphans finds executors a previous run of this worker left running.
func (w *Worker) adoptOrphans() {
	files, err := procs.ListPidFiles(filepath.Join(w.opts.DataDir, "pids"))
	if err != nil {
		w.log.Warn("list pid files", "err", err)
		return
	}
	for _, f := range files {
		p, err := procs.Adopt(f)
		if err != nil {
			continue // stale: Adopt removed it
		}
		id := strings.TrimSuffix(filepath.Base(f), ".pid")
		w.adopted[id] = p
		w.log.Info("found a running executor from a previous run; waiting for the leader to confirm it", "executor", id, "pid", p.PID())
	}
}
