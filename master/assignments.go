package master

import (
	"slices"
	"sort"

	"github.com/gear-run/gear/pkg/cluster"
)

// assignments is the heartbeat reply for worker id: the leader, the
// masters, and what the worker should run now.
func (m *Master) assignments(id string) cluster.HeartbeatReply {
	reply := cluster.HeartbeatReply{Leader: m.self, Masters: m.raft.voters()}
	m.fsm.readWorker(id, func(s *State, refs []execRef) {
		reply.Assignments = assignmentsOf(id, refs)
		if w := s.Workers[id]; w != nil {
			reply.Draining = w.Draining
		}
	})
	return reply
}

// assignmentsFor is the read model of worker id: every executor of a live
// app placed on it, with what it needs to run it, sorted by executor id
// (never nil: the reply lists [] when there is nothing to run).
func assignmentsFor(st *State, id string) []cluster.Assignment {
	return assignmentsOf(id, workerRefs(st, id))
}

// assignmentsOf is assignmentsFor from refs, the executors of worker id
// (workerRefs, or the fsm's index of them).
func assignmentsOf(id string, refs []execRef) []cluster.Assignment {
	out := []cluster.Assignment{}
	for _, ref := range refs {
		app := ref.app
		if app.State == cluster.AppKilled {
			continue
		}
		e := app.Executors[ref.i]
		if e.Worker != id && e.Replacement != nil && e.Replacement.Worker == id {
			e = *e.Replacement // started here while e's worker drains
		}
		if e.Worker != id {
			continue
		}
		// The executor's own version: during a rollout, some run
		// the old bundle and some the new.
		procs, bundle := app.Processes, app.Bundle
		if v := version(app, e.Version); v != nil {
			procs, bundle = v.Processes, v.Bundle
		}
		pi := slices.IndexFunc(procs, func(p cluster.Process) bool { return p.Name == e.Process })
		if pi < 0 {
			continue
		}
		out = append(out, cluster.Assignment{
			Executor: e, Process: procs[pi], Bundle: bundle, Args: app.Args,
			Env: app.RestartEnv, Generation: e.Generation, Disabled: app.Disabled,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Executor.ID < out[j].Executor.ID })
	return out
}

// execRef is one executor of a worker: app.Executors[i], placed on the
// worker or with its replacement there. It points into the state it was
// found in and is valid only while that state is unchanged.
type execRef struct {
	app *cluster.App
	i   int
}

// workerIndex maps each worker id to its executors in the state of one
// version (fsm.readWorker).
type workerIndex struct {
	built    bool
	version  uint64
	byWorker map[string][]execRef
}

func buildWorkerIndex(st *State, version uint64) workerIndex {
	idx := workerIndex{built: true, version: version, byWorker: make(map[string][]execRef, len(st.Workers))}
	for _, app := range st.Apps {
		for i := range app.Executors {
			e := &app.Executors[i]
			if e.Worker != "" {
				idx.byWorker[e.Worker] = append(idx.byWorker[e.Worker], execRef{app, i})
			}
			if r := e.Replacement; r != nil && r.Worker != "" && r.Worker != e.Worker {
				idx.byWorker[r.Worker] = append(idx.byWorker[r.Worker], execRef{app, i})
			}
		}
	}
	return idx
}

// workerRefs scans st for the executors of worker id (what the index
// holds for it).
func workerRefs(st *State, id string) []execRef {
	var out []execRef
	for _, app := range st.Apps {
		for i, e := range app.Executors {
			if e.Worker == id || e.Replacement != nil && e.Replacement.Worker == id {
				out = append(out, execRef{app, i})
			}
		}
	}
	return out
}
