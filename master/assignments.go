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
	m.fsm.read(func(s *State) {
		reply.Assignments = assignmentsFor(s, id)
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
	out := []cluster.Assignment{}
	for _, app := range st.Apps {
		if app.State == cluster.AppKilled {
			continue
		}
		for _, e := range app.Executors {
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
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Executor.ID < out[j].Executor.ID })
	return out
}
