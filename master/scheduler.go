package master

import (
	"context"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// scheduleLoop is the leader's reconciler: every tick it compares desired
// and actual state and replicates what must change.
func (m *Master) scheduleLoop(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !m.isLeader() {
			m.mu.Lock()
			m.leading = false
			m.mu.Unlock()
			continue
		}
		m.mu.Lock()
		if !m.leading {
			// A new leader has heard from no worker yet: give every
			// known worker a full timeout to re-attach before treating
			// it as lost.
			m.leading = true
			now := time.Now()
			m.fsm.read(func(s *State) {
				for id := range s.Workers {
					m.lastSeen[id] = now
				}
			})
			m.log.Info("this master is now the leader", "term", m.raft.raft.CurrentTerm())
		}
		m.mu.Unlock()
		if err := m.reconcile(time.Now()); err != nil {
			m.log.Warn("reconcile", "err", err)
		}
		if err := m.forgetLongDead(time.Now()); err != nil {
			m.log.Warn("forget long-dead workers", "err", err)
		}
	}
}

// reconcile performs one round of scheduling decisions.
func (m *Master) reconcile(now time.Time) error {
	st := m.fsm.snapshotState()
	// 1. Executors on workers that stayed unreachable past the timeout.
	var lost []string
	for _, app := range st.Apps {
		for _, e := range app.Executors {
			if e.Worker != "" && !m.workerAlive(e.Worker, now) {
				lost = append(lost, e.ID)
			}
		}
	}
	if len(lost) > 0 {
		m.log.Warn("workers unreachable past the failover timeout; rescheduling their executors", "count", len(lost), "executors", lost[:min(len(lost), 20)], "timeout", m.opts.FailoverTimeout)
		if err := m.applyUnassign(lost); err != nil {
			return err
		}
		st = m.fsm.snapshotState()
	}
	// 2. Place unplaced executors.
	if as := m.place(st, now); len(as) > 0 {
		if err := m.applyAssign(as); err != nil {
			return err
		}
		st = m.fsm.snapshotState()
	}
	// 3. Rolling restarts: one executor at a time, the next only when
	// every executor of the app runs its desired generation.
	for _, app := range st.Apps {
		if app.State == cluster.AppKilled {
			continue
		}
		settled := true
		next := ""
		for _, e := range app.Executors {
			if e.State != cluster.Running || e.Observed != e.Generation {
				settled = false
			}
			if next == "" && e.Generation < app.Generation {
				next = e.ID
			}
		}
		if settled && next != "" {
			if _, err := m.apply(command{Op: opBump, Bump: next}); err != nil {
				return err
			}
		}
	}
	return nil
}
