package master

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

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
	members := m.poolMembers()
	var unpooled []*cluster.Worker
	for _, w := range st.Workers {
		if !m.workerAlive(w.ID, now) {
			continue
		}
		if gossipState(members, w) != "alive" {
			unpooled = append(unpooled, w)
			continue
		}
		l := &load{w: w, exclusive: map[int]bool{}, shared: map[int]int{}}
		loads = append(loads, l)
		byID[w.ID] = l
	}
	m.noteUnpooled(unpooled, now)
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
