package master

import (
	"fmt"
	"slices"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// Rescheduling: an executor that gave up on its worker (FAILED) is moved
// to another worker by its process group's reschedule policy
// (cluster.Reschedule). The decision is split the way the rest of the
// core is:
//
//   - when a worker reports the executor FAILED, apply (opStatus) marks it
//     RescheduleDue if the policy has an attempt left and another worker
//     is registered; its app is then not FAILED (App.DeriveState);
//   - schedule (reschedules) emits opReschedule for every executor so
//     marked; applying it records the attempt and unplaces the executor,
//     with NotBefore = now + the policy's delay;
//   - place puts it on a usable worker it has not failed on, once
//     NotBefore has passed (ClusterView.Now).
//
// Everything reads the command's time or the view's, never a clock.

// process returns the process group of executor e, nil if gone.
func (s *State) process(e *cluster.Executor) *cluster.Process {
	app := s.Apps[e.App]
	if app == nil {
		return nil
	}
	if i := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process }); i >= 0 {
		return &app.Processes[i]
	}
	return nil
}

// rescheduleLeft reports whether executor e, FAILED at now, may be moved:
// its app is live, its policy has an attempt left at now, and a registered
// worker exists that it has not failed on.
func (s *State) rescheduleLeft(e *cluster.Executor, now time.Time) bool {
	app, p := s.Apps[e.App], s.process(e)
	if app == nil || p == nil || app.State == cluster.AppKilled {
		return false
	}
	pol := p.ReschedulePolicy()
	if pol.Attempts <= pol.Used(e.Reschedules, now) {
		return false
	}
	avoid := avoidedWorkers(e)
	for id := range s.Workers {
		if id != e.Worker && !avoid[id] {
			return true
		}
	}
	return false
}

// reschedule applies one attempt to e (opReschedule).
func (s *State) reschedule(e *cluster.Executor, now time.Time) {
	if e.State != cluster.Failed || !e.RescheduleDue || e.Worker == "" {
		return // reported otherwise since the leader decided
	}
	p := s.process(e)
	if p == nil {
		return
	}
	pol := p.ReschedulePolicy()
	n := pol.Used(e.Reschedules, now)
	reason := e.LastError
	if reason == "" {
		reason = e.LastExit
	}
	at := cluster.RescheduleAttempt{Time: now, From: e.Worker, Reason: reason, NotBefore: now.Add(pol.DelayOf(n))}
	e.Reschedules = append(slices.Clone(e.Reschedules), at) // shared with clones: never append in place
	e.LastError = fmt.Sprintf("rescheduled (attempt %d of %d) after it gave up on worker %s: %s; starts on another worker after %s",
		n+1, pol.Attempts, at.From, shorten(reason), at.NotBefore.UTC().Format(time.RFC3339))
	e.Worker, e.WorkerAddr, e.PID, e.CPUs = "", "", 0, []int{}
	e.State, e.Crashes, e.RescheduleDue = cluster.Pending, 0, false
}

// reschedules lists, in app order, the executors to move now.
func reschedules(st *State) []string {
	var out []string
	for _, id := range sortedAppIDs(st) {
		app := st.Apps[id]
		if app.State == cluster.AppKilled {
			continue
		}
		for _, e := range app.Executors {
			if e.State == cluster.Failed && e.RescheduleDue && e.Worker != "" {
				out = append(out, e.ID)
			}
		}
	}
	return out
}

// avoidedWorkers are the workers e gave up on before: place does not put
// it back on them.
func avoidedWorkers(e *cluster.Executor) map[string]bool {
	if len(e.Reschedules) == 0 {
		return nil
	}
	m := make(map[string]bool, len(e.Reschedules))
	for _, a := range e.Reschedules {
		m[a.From] = true
	}
	return m
}

// waitingReschedule reports whether e is rescheduled but its delay has not
// passed at now.
func waitingReschedule(e *cluster.Executor, now time.Time) bool {
	if len(e.Reschedules) == 0 {
		return false
	}
	return now.Before(e.Reschedules[len(e.Reschedules)-1].NotBefore)
}
