package master

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// Draining a worker (gear workers drain ID): the worker stays registered
// and keeps its executors running, but nothing new is placed on it. Each
// of its executors gets a replacement, a copy placed on another worker
// (place, with assignment.Replace), that the worker there starts beside the
// old one. Once the replacement is ready the executor moves to it
// (opPromote) and the drained worker, no longer assigned the executor,
// stops the old copy: an app never has fewer ready executors than before
// where there is room elsewhere. At the deadline, what is still on the
// worker moves anyway (opEvict): a replacement that is not ready yet
// takes over, an executor that found no room is stopped and waits to be
// placed. gear workers eligible ID ends the drain.

// drainCmd is opDrain's argument.
type drainCmd struct {
	Worker   string        `json:"worker"`
	Draining bool          `json:"draining"`
	Deadline time.Duration `json:"deadline,omitempty"` // from the command's time
}

// ready reports whether an executor (or a replacement) of app serves: the
// one test a drain, a rolling restart and a rolling update wait for. It
// runs its desired generation and, where its process group has a health
// check, the check passes.
func ready(app *cluster.App, e cluster.Executor) bool {
	if e.State != cluster.Running || e.Observed != e.Generation {
		return false
	}
	pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process })
	return pi < 0 || app.Processes[pi].Health == nil || e.Health == cluster.HealthPassing
}

// applyDrain sets or clears worker c.Worker's drain mark (opDrain).
func (s *State) applyDrain(c *command) result {
	d := c.Drain
	w := s.Workers[d.Worker]
	if w == nil {
		return result{Err: fmt.Errorf("%w: %q (see `gear workers`)", ErrNoSuchWorker, d.Worker)}
	}
	cw := *w // workers are shared with clones: replace, never write through
	cw.Draining = d.Draining
	cw.DrainDeadline = time.Time{}
	if d.Draining {
		cw.DrainDeadline = c.Now.Add(d.Deadline)
	}
	s.Workers[d.Worker] = &cw
	if !d.Draining {
		// Eligible again: the executors stay; their replacements go.
		for _, app := range s.Apps {
			for i := range app.Executors {
				if e := &app.Executors[i]; e.Worker == d.Worker && e.Replacement != nil {
					e.Replacement = nil
				}
			}
		}
	}
	return result{ID: d.Worker}
}

// draining reports whether executor e sits on a draining worker.
func (s *State) draining(e *cluster.Executor) bool {
	w := s.Workers[e.Worker]
	return e.Worker != "" && w != nil && w.Draining
}

// promote moves e to its replacement (opPromote, and opEvict when it has
// one).
func promote(e *cluster.Executor) {
	r := e.Replacement
	e.Worker, e.WorkerAddr, e.CPUs, e.Ports, e.PID = r.Worker, r.WorkerAddr, r.CPUs, r.Ports, r.PID
	e.State, e.StartedAt, e.Observed, e.LastExit, e.LastError = r.State, r.StartedAt, r.Observed, r.LastExit, r.LastError
	e.Replacement = nil
}

// applyPromote moves the executors c.Lost to their replacements.
func (s *State) applyPromote(c *command) {
	for _, id := range c.Lost {
		if e := s.executor(id); e != nil && e.Replacement != nil && s.draining(e) {
			promote(e)
		}
	}
}

// applyEvict takes the executors c.Lost off their draining worker at its
// deadline: to their replacement if they have one, else unplaced.
func (s *State) applyEvict(c *command) {
	for _, id := range c.Lost {
		e := s.executor(id)
		if e == nil || !s.draining(e) {
			continue
		}
		if e.Replacement != nil {
			promote(e)
			continue
		}
		from := e.Worker
		e.Worker, e.WorkerAddr, e.PID, e.CPUs = "", "", 0, []int{}
		e.State = cluster.Pending
		e.LastError = "stopped: worker " + from + " was drained and its deadline passed before the executor found room elsewhere"
	}
}

// applyReplacement records a replacement placement (opAssign with Replace).
func (s *State) applyReplacement(e *cluster.Executor, a assignment) {
	if !s.draining(e) || e.Replacement != nil {
		return
	}
	r := *e
	r.Replacement, r.Reschedules, r.LogTail = nil, nil, nil
	r.Worker, r.WorkerAddr, r.CPUs, r.Ports = a.Worker, a.WorkerAddr, a.CPUs, a.Ports
	r.State, r.PID, r.LastError, r.LastExit, r.Observed, r.StartedAt = cluster.Starting, 0, "", "", 0, time.Time{}
	e.Replacement = &r
}

// reportReplacement applies a worker's report about a replacement it runs.
func reportReplacement(e *cluster.Executor, worker string, r cluster.ExecutorReport) {
	if e.Replacement == nil || e.Replacement.Worker != worker {
		return // stale
	}
	rp := *e.Replacement
	rp.PID, rp.State, rp.Restarts, rp.Crashes = r.PID, r.State, r.Restarts, r.Crashes
	rp.LastExit, rp.LastError, rp.Observed, rp.StartedAt = r.LastExit, r.LastError, r.Generation, r.StartedAt
	if len(r.CPUs) > 0 {
		rp.CPUs = r.CPUs
	}
	e.Replacement = &rp
}

// drains lists the executors of draining workers whose replacement is
// ready (promote) and those still there at their worker's deadline
// (evict), at view.Now, and the replacements whose worker is not alive
// (unplace: placed again elsewhere).
func drains(st *State, view ClusterView) (promote, evict, unplace []string) {
	for _, id := range sortedAppIDs(st) {
		app := st.Apps[id]
		if app.State == cluster.AppKilled {
			continue
		}
		for i := range app.Executors {
			e := &app.Executors[i]
			if !st.draining(e) {
				continue
			}
			switch {
			case e.Replacement != nil && !view.Alive[e.Replacement.Worker]:
				// Its worker is gone: place another one.
				unplace = append(unplace, e.ID)
			case e.Replacement != nil && ready(app, *e.Replacement):
				promote = append(promote, e.ID)
			case !view.Now.Before(st.Workers[e.Worker].DrainDeadline):
				evict = append(evict, e.ID)
			}
		}
	}
	return promote, evict, unplace
}

// handleDrain marks worker {id} draining with the body's deadline
// (gear workers drain ID -deadline D).
func (m *Master) handleDrain(w http.ResponseWriter, r *http.Request) {
	var req cluster.DrainRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	if req.Deadline <= 0 {
		writeError(w, fmt.Errorf("%w: deadline must be a positive duration, got %v (e.g. -deadline 5m: how long executors may take to move before what remains is stopped)", ErrBadRequest, req.Deadline))
		return
	}
	m.setDrain(w, r.PathValue("id"), true, req.Deadline)
}

// handleEligible ends a drain (gear workers eligible ID).
func (m *Master) handleEligible(w http.ResponseWriter, r *http.Request) {
	m.setDrain(w, r.PathValue("id"), false, 0)
}

func (m *Master) setDrain(w http.ResponseWriter, id string, draining bool, deadline time.Duration) {
	if _, err := m.apply(command{Op: opDrain, Drain: &drainCmd{Worker: id, Draining: draining, Deadline: deadline}}); err != nil {
		writeError(w, err)
		return
	}
	res := cluster.DrainResult{ID: id, Executors: []string{}}
	m.fsm.read(func(s *State) {
		if wk := s.Workers[id]; wk != nil {
			res.Draining, res.DrainDeadline = wk.Draining, wk.DrainDeadline
		}
		for _, app := range s.Apps {
			for _, e := range app.Executors {
				if e.Worker == id && app.State != cluster.AppKilled {
					res.Executors = append(res.Executors, e.ID)
				}
			}
		}
	})
	slices.Sort(res.Executors)
	m.log.Info("worker drain changed", "worker", id, "draining", draining, "deadline", deadline, "executors", len(res.Executors))
	writeJSON(w, res)
}
