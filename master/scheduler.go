package master

import (
	"github.com/gear-run/gear/pkg/gossip"

	"context"
	"maps"
	"slices"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// scheduleLoop is the leader's reconciler: every tick it compares desired
// and actual state and replicates what must change.
func (m *Master) scheduleLoop(ctx context.Context) {
	staleLogged := false
	round := func() {
		if !m.isLeader() {
			m.mu.Lock()
			m.leading = false
			m.mu.Unlock()
			return
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
		if err := m.fsm.stale(); err != nil {
			// Its state lacks an entry a newer gear wrote: deciding from
			// it could undo what that entry did.
			if !staleLogged {
				m.log.Error("this master leads but its state is incomplete (it refused a replicated command): it makes no scheduling decisions until it is upgraded", "err", err)
				staleLogged = true
			}
			return
		}
		if err := m.reconcile(time.Now()); err != nil {
			m.log.Warn("reconcile", "err", err)
		}
		if err := m.forgetLongDead(time.Now()); err != nil {
			m.log.Warn("forget long-dead workers", "err", err)
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.scheduleNow:
		}
		if ctx.Err() != nil { // both were ready: the end wins
			return
		}
		round()
	}
}

// kickSchedule asks for a reconcile round now rather than at the next
// tick: a submitted app is placed at once.
func (m *Master) kickSchedule() {
	select {
	case m.scheduleNow <- struct{}{}:
	default:
	}
}

// reconcile performs one round of scheduling: it builds the leader's view
// of the workers, asks schedule (the pure core, schedule.go) what must
// change, and replicates that in order. It stops at the first command that
// fails; the next round decides again from the state then.
//
// schedule runs on the live state under the read lock (it changes only
// its own copies): a round that decides nothing, as most do, copies
// nothing, where a copy of the whole state every 200 ms was most of a
// steady leader's work at 10 000 executors.
func (m *Master) reconcile(now time.Time) error {
	// The view is built outside the state lock (it takes m.mu and the
	// pool's, which are taken before it elsewhere), from a copy of the
	// workers.
	workers := &State{}
	m.fsm.read(func(s *State) {
		workers.Workers = make(map[string]*cluster.Worker, len(s.Workers))
		for id, w := range s.Workers {
			cw := *w
			workers.Workers[id] = &cw
		}
	})
	view, unpooled := m.clusterView(workers, now)
	m.noteUnpooled(unpooled, now)
	var decided []command
	m.fsm.read(func(s *State) { decided = schedule(s, view) })
	if len(decided) == 0 {
		return nil
	}
	st := m.fsm.snapshotState() // for applyDecision's log lines
	for _, c := range decided {
		if err := m.applyDecision(st, c); err != nil {
			return err
		}
	}
	return nil
}

// clusterView is the leader's view of the workers at now: alive by the
// heartbeat clock (workerAlive), eligible by the gossip pool. It also
// lists the registered workers that heartbeat but are not alive in the
// pool, for noteUnpooled.
func (m *Master) clusterView(st *State, now time.Time) (ClusterView, []*cluster.Worker) {
	m.mu.Lock()
	heard := slices.Collect(maps.Keys(m.lastSeen))
	m.mu.Unlock()
	view := ClusterView{Alive: make(map[string]bool, len(heard)), Eligible: make(map[string]bool, len(st.Workers)), Now: now}
	for _, id := range heard {
		if m.workerAlive(id, now) {
			view.Alive[id] = true
		}
	}
	members := m.poolMembers()
	var unpooled []*cluster.Worker
	for _, w := range st.Workers {
		if gossipState(members, w) == "alive" {
			view.Eligible[w.ID] = true
		} else if view.Alive[w.ID] {
			unpooled = append(unpooled, w)
		}
	}
	return view, unpooled
}

// applyDecision replicates one command of schedule, the growing lists in
// batches (batch.go). st is the state schedule decided on, for the log.
func (m *Master) applyDecision(st *State, c command) error {
	switch c.Op {
	case opUnassign:
		// The heartbeat clock decided; gossip is reported beside it, as
		// the reason's confirmation when it agrees.
		workers := workersOf(st, c.Lost)
		gone := map[string]string{} // lost worker -> its gossip state here
		agrees := true
		for _, w := range workers {
			gone[w] = m.poolState(gossip.WorkerName(w))
			agrees = agrees && gone[w] != gossip.StateAlive
		}
		m.log.Warn("workers unreachable past the failover timeout; rescheduling their executors",
			"workers", workers, "count", len(c.Lost), "executors", c.Lost[:min(len(c.Lost), 20)], "timeout", m.opts.FailoverTimeout,
			"gossip", gone, "gossip_agrees", agrees)
		return m.applyUnassign(c.Lost)
	case opAssign:
		return m.applyAssign(c.Assign)
	default:
		_, err := m.apply(c)
		return err
	}
}

// workersOf lists, sorted, the workers the given executors are placed on.
func workersOf(st *State, executors []string) []string {
	var out []string
	for _, id := range executors {
		if e := st.executor(id); e != nil && e.Worker != "" && !slices.Contains(out, e.Worker) {
			out = append(out, e.Worker)
		}
	}
	slices.Sort(out)
	return out
}
