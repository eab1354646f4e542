package master

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/gear-run/gear/pkg/cluster"
)

// place is the placement policy: it picks a worker and cores for every
// unplaced executor of a live application, among the workers view says
// are both alive and eligible. Executors that ask for cores get cores
// nobody else holds (unless both sides are marked shared); among the
// workers that can take one, see better. An executor that fits nowhere
// gets an assignment with only Error set, once per distinct reason (its
// LastError remembers the last one).
//
// place is pure: it reads st and view and nothing else, and changes
// neither, so tests step it without a master (see schedule_test.go).
func place(st *State, view ClusterView) []assignment {
	type load struct {
		w         *cluster.Worker
		exclusive map[int]bool // cores held by non-shared executors
		shared    map[int]int  // cores held by shared executors -> count
		count     int
		// ports taken -> "app/process" for listen = [...] (shareable by
		// that group), "" for ports = [...] (never shared)
		ports  map[int]string
		memory int64 // bytes held by executors with a memory limit
	}
	var loads []*load
	byID := map[string]*load{}
	drainingOnly := false // some usable worker is draining
	for _, w := range st.Workers {
		if view.usable(w.ID) && w.Draining {
			drainingOnly = true
		}
		if !view.usable(w.ID) || w.Draining {
			continue
		}
		l := &load{w: w, exclusive: map[int]bool{}, shared: map[int]int{}, ports: map[int]string{}}
		loads = append(loads, l)
		byID[w.ID] = l
	}
	sort.Slice(loads, func(i, j int) bool { return loads[i].w.ID < loads[j].w.ID })
	for _, app := range st.Apps {
		for _, e := range app.Executors {
			shared, mem := false, int64(0)
			var proc *cluster.Process
			if pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process }); pi >= 0 {
				shared, mem = app.Processes[pi].Shared, app.Processes[pi].Memory
				proc = &app.Processes[pi]
			}
			held := []cluster.Executor{e}
			if e.Replacement != nil {
				held = append(held, *e.Replacement)
			}
			for _, h := range held {
				l := byID[h.Worker]
				if l == nil {
					continue
				}
				l.count++
				l.memory += mem
				if proc != nil {
					takePorts(l.ports, app.ID, *proc)
				}
				for _, c := range h.CPUs {
					if shared {
						l.shared[c]++
					} else {
						l.exclusive[c] = true
					}
				}
			}
		}
	}
	var out []assignment
	for _, id := range sortedAppIDs(st) {
		app := st.Apps[id]
		if app.State == cluster.AppKilled {
			continue
		}
		for _, e := range app.Executors {
			// An executor on a draining worker gets a replacement
			// elsewhere; where none fits, it stays until the deadline.
			replace := st.draining(&e) && e.Replacement == nil && e.State != cluster.Failed
			if (e.Worker != "" && !replace) || e.State == cluster.Failed || waitingReschedule(&e, view.Now) {
				continue
			}
			avoid := avoidedWorkers(&e)
			pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process })
			if pi < 0 {
				continue
			}
			p := app.Processes[pi]
			var best *load
			var bestCPUs []int
			bestFree := -1
			for _, l := range loads {
				if avoid[l.w.ID] || !portsFree(l.ports, app.ID, p) {
					continue
				}
				free := freeCores(l.w.CPUs, l.exclusive, l.shared, p.Shared)
				if len(free) < p.CPUs || !memoryFits(l.w.Memory, l.memory, p.Memory) {
					continue
				}
				if best == nil || better(p.CPUs, len(free), l.count, bestFree, best.count) {
					best, bestFree = l, len(free)
					bestCPUs = free[:p.CPUs]
				}
			}
			if best == nil && replace {
				continue
			}
			if best == nil {
				msg := noRoomMessage(p, loads == nil)
				if loads == nil && drainingOnly {
					msg = "waiting for a worker: every alive worker is draining (gear workers eligible ID ends a drain, or start a worker)"
				}
				if len(avoid) > 0 && !slices.ContainsFunc(loads, func(l *load) bool { return !avoid[l.w.ID] }) {
					msg = fmt.Sprintf("waiting for a worker it has not given up on (not %v): none other is alive and eligible", slices.Sorted(maps.Keys(avoid)))
				}
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
			takePorts(best.ports, app.ID, p)
			best.memory += p.Memory
			out = append(out, assignment{Executor: e.ID, Worker: best.w.ID, WorkerAddr: best.w.Addr, CPUs: cpus, Replace: replace})
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

// takePorts marks the ports an executor of process group p of app holds
// on a worker: its listen ports, shareable by the group's other instances
// (the worker passes them one socket), and its ports, which no other
// executor may bind there.
func takePorts(taken map[int]string, app string, p cluster.Process) {
	for _, port := range p.Listen {
		taken[port] = app + "/" + p.Name
	}
	for _, port := range p.Ports {
		taken[port] = ""
	}
}

// portsFree reports whether an executor of group p of app can bind its
// ports on a worker whose executors hold taken.
func portsFree(taken map[int]string, app string, p cluster.Process) bool {
	for _, port := range p.Listen {
		if owner, ok := taken[port]; ok && owner != app+"/"+p.Name {
			return false
		}
	}
	for _, port := range p.Ports {
		if _, ok := taken[port]; ok {
			return false
		}
	}
	return true
}

// memoryFits reports whether a process asking for want bytes fits on a
// worker of total bytes (0: not counted) of which used are held.
func memoryFits(total, used, want int64) bool {
	return want == 0 || total == 0 || used+want <= total
}

func noRoomMessage(p cluster.Process, noWorkers bool) string {
	if noWorkers {
		return "waiting for a worker: none is registered and alive (start one with bin/worker)"
	}
	if len(p.Ports) > 0 || len(p.Listen) > 0 {
		return fmt.Sprintf("no alive worker has %d free core(s) and the ports %v free for process group %q; add workers or cores, lower cpus, or use listen = [...] so instances share a port", p.CPUs, append(slices.Clone(p.Listen), p.Ports...), p.Name)
	}
	if p.Memory > 0 {
		return fmt.Sprintf("no alive worker has %d free core(s) and %d bytes of memory free for process group %q; add workers, lower cpus or memory", p.CPUs, p.Memory, p.Name)
	}
	return fmt.Sprintf("no alive worker has %d free core(s) for process group %q; add workers or cores, lower cpus, or mark it shared", p.CPUs, p.Name)
}
