package master

import (
	"slices"
	"sort"

	"github.com/gear-run/gear/pkg/cluster"
)

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
