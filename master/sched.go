package master

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/gossip"
)

// handleHeartbeat records a worker as alive, folds the state changes it
// reports into the replicated state, and answers with its assignments.
func (m *Master) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb cluster.Heartbeat
	if err := decodeBody(r, &hb); err != nil {
		writeError(w, err)
		return
	}
	if hb.Worker.ID == "" || hb.Worker.Addr == "" {
		writeError(w, fmt.Errorf("%w: heartbeat without worker id or address", ErrBadRequest))
		return
	}
	now := time.Now()
	m.seen(hb.Worker.ID, now)
	var known *cluster.Worker
	var reports []cluster.ExecutorReport
	var gone []string
	m.fsm.read(func(s *State) {
		if w, ok := s.Workers[hb.Worker.ID]; ok {
			c := *w
			known = &c
		}
		reported := map[string]cluster.ExecutorReport{}
		for _, rep := range hb.Executors {
			reported[rep.ID] = rep
		}
		for _, app := range s.Apps {
			for _, e := range app.Executors {
				if e.Worker != hb.Worker.ID {
					continue
				}
				rep, ok := reported[e.ID]
				if !ok {
					if app.State == cluster.AppKilled {
						gone = append(gone, e.ID)
					}
					continue
				}
				if changed(e, rep) {
					reports = append(reports, rep)
				}
			}
		}
	})
	if known == nil || known.Addr != hb.Worker.Addr || known.BootID != hb.Worker.BootID || !slices.Equal(known.CPUs, hb.Worker.CPUs) {
		wk := hb.Worker
		if _, err := m.apply(command{Op: opWorker, Worker: &wk}); err != nil {
			writeError(w, err)
			return
		}
		if known == nil {
			m.log.Info("worker registered", "worker", wk.ID, "addr", wk.Addr, "cpus", wk.CPUs)
		}
	}
	if len(reports) > 0 || len(gone) > 0 {
		wk := hb.Worker
		if _, err := m.apply(command{Op: opStatus, Worker: &wk, Reports: reports, Gone: gone}); err != nil {
			writeError(w, err)
			return
		}
	}
	reply := m.assignments(hb.Worker.ID)
	reply.QuorumAgeMS = m.quorumAge().Milliseconds()
	writeJSON(w, reply)
}

// changed reports whether a worker's report differs from the replicated
// executor in anything worth a log entry.
func changed(e cluster.Executor, r cluster.ExecutorReport) bool {
	return e.PID != r.PID || e.State != r.State || e.Restarts != r.Restarts || e.LastExit != r.LastExit ||
		e.LastError != r.LastError || e.Observed != r.Generation || !e.StartedAt.Equal(r.StartedAt) ||
		(len(r.CPUs) > 0 && !slices.Equal(e.CPUs, r.CPUs))
}

// assignments lists what worker id should run now.
func (m *Master) assignments(id string) cluster.HeartbeatReply {
	reply := cluster.HeartbeatReply{Leader: m.self, Masters: m.raft.voters(), Assignments: []cluster.Assignment{}}
	m.fsm.read(func(s *State) {
		for _, app := range s.Apps {
			if app.State == cluster.AppKilled {
				continue
			}
			for _, e := range app.Executors {
				if e.Worker != id {
					continue
				}
				pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process })
				if pi < 0 {
					continue
				}
				reply.Assignments = append(reply.Assignments, cluster.Assignment{
					Executor: e, Process: app.Processes[pi], Bundle: app.Bundle, Args: app.Args,
					Env: app.RestartEnv, Generation: e.Generation,
				})
			}
		}
	})
	sort.Slice(reply.Assignments, func(i, j int) bool { return reply.Assignments[i].Executor.ID < reply.Assignments[j].Executor.ID })
	return reply
}

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
	}
}

// reconcile performs one round of scheduling decisions.
func (m *Master) reconcile(now time.Time) error {
	st := m.fsm.snapshotState()
	// 1. Executors on workers that stayed unreachable past the timeout.
	var lost []string
	gone := map[string]string{} // lost worker -> its gossip state here
	for _, app := range st.Apps {
		for _, e := range app.Executors {
			if e.Worker != "" && !m.workerAlive(e.Worker, now) {
				lost = append(lost, e.ID)
				gone[e.Worker] = m.gossipState("worker@" + e.Worker)
			}
		}
	}
	if len(lost) > 0 {
		// The heartbeat clock decides; gossip is reported beside it, as
		// the reason's confirmation when it agrees.
		agrees := true
		for _, g := range gone {
			agrees = agrees && g != gossip.StateAlive
		}
		m.log.Warn("workers unreachable past the failover timeout; rescheduling their executors", "executors", lost, "timeout", m.opts.FailoverTimeout,
			"gossip", gone, "gossip_agrees", agrees)
		if _, err := m.apply(command{Op: opUnassign, Lost: lost}); err != nil {
			return err
		}
		st = m.fsm.snapshotState()
	}
	// 2. Place unplaced executors.
	if as := m.place(st, now); len(as) > 0 {
		if _, err := m.apply(command{Op: opAssign, Assign: as}); err != nil {
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

// place picks a worker and cores for every unplaced executor of a live
// application. Executors that ask for cores get cores nobody else holds
// (unless both sides are marked shared); among the workers that can take
// one, see better.
func (m *Master) place(st *State, now time.Time) []assignment {
	type load struct {
		w         *cluster.Worker
		exclusive map[int]bool // cores held by non-shared executors
		shared    map[int]int  // cores held by shared executors -> count
		count     int
	}
	var loads []*load
	byID := map[string]*load{}
	for _, w := range st.Workers {
		if !m.workerAlive(w.ID, now) {
			continue
		}
		l := &load{w: w, exclusive: map[int]bool{}, shared: map[int]int{}}
		loads = append(loads, l)
		byID[w.ID] = l
	}
	sort.Slice(loads, func(i, j int) bool { return loads[i].w.ID < loads[j].w.ID })
	for _, app := range st.Apps {
		for _, e := range app.Executors {
			l := byID[e.Worker]
			if l == nil {
				continue
			}
			l.count++
			shared := false
			if pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process }); pi >= 0 {
				shared = app.Processes[pi].Shared
			}
			for _, c := range e.CPUs {
				if shared {
					l.shared[c]++
				} else {
					l.exclusive[c] = true
				}
			}
		}
	}
	var out []assignment
	ids := make([]string, 0, len(st.Apps))
	for id := range st.Apps {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, appOrder)
	for _, id := range ids {
		app := st.Apps[id]
		if app.State == cluster.AppKilled {
			continue
		}
		for _, e := range app.Executors {
			if e.Worker != "" || e.State == cluster.Failed {
				continue
			}
			pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process })
			if pi < 0 {
				continue
			}
			p := app.Processes[pi]
			var best *load
			var bestCPUs []int
			bestFree := -1
			for _, l := range loads {
				free := freeCores(l.w.CPUs, l.exclusive, l.shared, p.Shared)
				if len(free) < p.CPUs {
					continue
				}
				if best == nil || better(p.CPUs, len(free), l.count, bestFree, best.count) {
					best, bestFree = l, len(free)
					bestCPUs = free[:p.CPUs]
				}
			}
			if best == nil {
				msg := noRoomMessage(p, loads == nil)
				if e.LastError != msg {
					out = append(out, assignment{Executor: e.ID, Error: msg})
				}
				continue
			}
			cpus := append([]int{}, bestCPUs...)
			for _, c := range cpus {
				if p.Shared {
					best.shared[c]++
				} else {
					best.exclusive[c] = true
				}
			}
			best.count++
			out = append(out, assignment{Executor: e.ID, Worker: best.w.ID, WorkerAddr: best.w.Addr, CPUs: cpus})
		}
	}
	return out
}

// better reports whether a worker with free cores and count executors
// beats the best so far: pinned executors go where most cores are free,
// then to the less busy worker; unpinned ones spread by executor count.
func better(cpus, free, count, bestFree, bestCount int) bool {
	if cpus == 0 && count != bestCount {
		return count < bestCount
	}
	if free != bestFree {
		return free > bestFree
	}
	return count < bestCount
}

// freeCores lists the cores an executor may take on a worker, least shared
// first.
func freeCores(all []int, exclusive map[int]bool, shared map[int]int, wantShared bool) []int {
	var free []int
	for _, c := range all {
		if exclusive[c] {
			continue
		}
		if !wantShared && shared[c] > 0 {
			continue
		}
		free = append(free, c)
	}
	sort.SliceStable(free, func(i, j int) bool { return shared[free[i]] < shared[free[j]] })
	return free
}

func noRoomMessage(p cluster.Process, noWorkers bool) string {
	if noWorkers {
		return "waiting for a worker: none is registered and alive (start one with bin/worker)"
	}
	return fmt.Sprintf("no alive worker has %d free core(s) for process group %q; add workers or cores, lower cpus, or mark it shared", p.CPUs, p.Name)
}

// gcLoop deletes bundles no live application references, after the
// grace period.
func (m *Master) gcLoop(ctx context.Context) {
	grace := m.opts.GCGrace
	if grace <= 0 {
		grace = time.Hour
	}
	tick := time.NewTicker(max(grace/4, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !m.isLeader() {
			continue
		}
		if deleted, err := m.gc(ctx, grace); err != nil {
			m.log.Warn("jar store gc", "err", err)
		} else if len(deleted) > 0 {
			m.log.Info("jar store gc deleted unreferenced bundles", "deleted", strings.Join(deleted, ","))
		}
	}
}

func (m *Master) gc(ctx context.Context, grace time.Duration) ([]string, error) {
	referenced := map[string]bool{}
	m.fsm.read(func(s *State) {
		for _, a := range s.Apps {
			if a.State != cluster.AppKilled {
				referenced[a.Bundle.Digest] = true
			}
		}
	})
	return m.blobs.GC(ctx, referenced, grace, time.Now())
}
