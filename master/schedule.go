package master

import (
	"slices"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// The scheduling core. What the leader should change is a pure function of
// the replicated state and of what the leader knows about its workers
// (ClusterView): schedule returns the commands, and the daemon
// (scheduler.go) replicates them. Nothing here reads a clock, takes a lock,
// starts a goroutine or touches a *Master, so tests step it the way etcd's
// raft tests step a node: (state, view) -> commands, apply them, step again
// (schedule_test.go).

// ClusterView is what the leader knows about the workers besides the
// replicated state. The daemon decides it (the heartbeat clock, the gossip
// pool); the core only reads it. A worker missing from a map is false.
type ClusterView struct {
	// Alive holds the workers the leader heard from within the failover
	// timeout. Executors on any other worker are lost and get rescheduled.
	Alive map[string]bool
	// Eligible holds the workers that are alive members of the gossip pool
	// as the incarnation they registered (see gossipState). A heartbeat
	// alone does not make a worker eligible: executors are placed only on
	// workers that are both alive and eligible. Gossip alone never makes
	// executors lost.
	Eligible map[string]bool
	// Now is the leader's clock for this round: a rescheduled executor
	// is placed only once its delay has passed (reschedule.go).
	Now time.Time
}

// usable reports whether executors may be placed on worker id.
func (v ClusterView) usable(id string) bool { return v.Alive[id] && v.Eligible[id] }

// schedule is one round of the leader's decisions. It returns, in the
// order they must be applied:
//
//  1. opUnassign of the executors on workers that are not alive (they
//     become LOST, or STOPPED for a killed app);
//  2. opReschedule of the FAILED executors whose reschedule policy moves
//     them to another worker (reschedule.go);
//  3. opRollback of the apps whose new version's instances fail
//     (update.go), opPromote of the executors of draining workers whose replacements
//     are ready, and opEvict of those still there at the deadline
//     (drain.go);
//  4. opAssign with a placement for every unplaced executor that fits
//     somewhere, and an error note for each one that does not (see place);
//  5. one opBump per application in a rolling restart whose executors have
//     all settled (see rollingRestarts).
//
// Each step sees the state the earlier ones leave (they are applied to a
// copy), so executors lost in this round are placed in this round. st is
// not changed. The daemon replicates the commands in batches (batch.go);
// a batch that fails leaves the rest for the next round.
func schedule(st *State, view ClusterView) []command {
	var out []command
	work := st // copied before the first change
	if lost := lostExecutors(st, view); len(lost) > 0 {
		c := command{Op: opUnassign, Lost: lost}
		out = append(out, c)
		work = work.clone()
		work.apply(&c)
	}
	if rs := reschedules(work); len(rs) > 0 {
		c := command{Op: opReschedule, Lost: rs, Now: view.Now}
		out = append(out, c)
		if work == st {
			work = work.clone()
		}
		work.apply(&c)
	}
	for _, c := range rollbacks(work) {
		c.Now = view.Now
		out = append(out, c)
		if work == st {
			work = work.clone()
		}
		work.apply(&c)
	}
	promote, evict, unplace := drains(work, view)
	for _, d := range []command{{Op: opUnplace, Lost: unplace, Now: view.Now}, {Op: opPromote, Lost: promote, Now: view.Now}, {Op: opEvict, Lost: evict, Now: view.Now}} {
		if len(d.Lost) == 0 {
			continue
		}
		out = append(out, d)
		if work == st {
			work = work.clone()
		}
		work.apply(&d)
	}
	if as := place(work, view); len(as) > 0 {
		c := command{Op: opAssign, Assign: as}
		out = append(out, c)
		if work == st {
			work = work.clone()
		}
		work.apply(&c)
	}
	for _, id := range rollingRestarts(work) {
		out = append(out, command{Op: opBump, Bump: id})
	}
	return out
}

// lostExecutors lists the executors placed on workers that are not alive,
// in app order.
func lostExecutors(st *State, view ClusterView) []string {
	var lost []string
	for _, id := range sortedAppIDs(st) {
		for _, e := range st.Apps[id].Executors {
			if e.Worker != "" && !view.Alive[e.Worker] {
				lost = append(lost, e.ID)
			}
		}
	}
	return lost
}

// rollingRestarts lists the executors to move to their app's generation
// and version now: one per restarting or updating app, and only once
// every executor of the app is ready (running, and healthy where its group
// has a health check), so a rolling restart or update takes one executor
// at a time and moves on from a healthy instance. An executor on another
// version that is not ready (a failed new instance during a rollback)
// goes first, at once.
func rollingRestarts(st *State) []string {
	var next []string
	for _, id := range sortedAppIDs(st) {
		app := st.Apps[id]
		if app.State == cluster.AppKilled {
			continue
		}
		settled := true
		first, broken := "", ""
		for _, e := range app.Executors {
			if !ready(app, e) {
				settled = false
			}
			stale := e.Generation < app.Generation || app.Version > 0 && e.Version != app.Version
			if first == "" && stale {
				first = e.ID
			}
			// One on another version that does not serve anyway is
			// replaced at once: that takes nothing out of service.
			if broken == "" && stale && e.Version != app.Version && !ready(app, e) {
				broken = e.ID
			}
		}
		switch {
		case broken != "":
			next = append(next, broken)
		case settled && first != "":
			next = append(next, first)
		}
	}
	return next
}

// sortedAppIDs lists the app ids in submission order.
func sortedAppIDs(st *State) []string {
	ids := make([]string, 0, len(st.Apps))
	for id := range st.Apps {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, appOrder)
	return ids
}
