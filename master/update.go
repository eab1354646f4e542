package master

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/gear-run/gear/pkg/cluster"
)

// Updates and rollbacks. An app has versions (App.Versions): the bundle
// and process groups it was submitted with, and one more per `gear app
// update`. App.Version is the one it runs or rolls to, and each executor
// records its own (Executor.Version). The rollout is the rolling restart's
// (schedule.go, rollingRestarts): one executor at a time moves to the
// app's version once every executor is ready, and its worker, seeing
// another bundle in the assignment, replaces the process. Everything is in
// the replicated state, so a new leader continues the rollout where the
// old one stopped.
//
// A version whose new instances fail (FAILED, or crashing again and again
// in BACKOFF; health once it acts, see ready) is rolled back
// automatically: rollbacks (pure) emits opRollback, which marks the
// version rolled back with the reason and makes the previous good version
// the app's again.

// updateCmd is the argument of opRollback.
type rollbackCmd struct {
	Version int    `json:"version,omitempty"` // 0: the newest good one before the current
	Auto    bool   `json:"auto,omitempty"`    // the scheduler's, because the current failed
	Reason  string `json:"reason,omitempty"`
}

// ensureVersions gives an app submitted before versions its version 1.
func ensureVersions(app *cluster.App) {
	if app.Version > 0 {
		return
	}
	app.Version = 1
	app.Versions = []cluster.AppVersion{{Version: 1, Bundle: app.Bundle, Processes: slices.Clone(app.Processes), Created: app.Submitted}}
	for i := range app.Executors {
		app.Executors[i].Version = 1
	}
}

// version returns version n of app, nil if it has none.
func version(app *cluster.App, n int) *cluster.AppVersion {
	for i := range app.Versions {
		if app.Versions[i].Version == n {
			return &app.Versions[i]
		}
	}
	return nil
}

// switchTo makes v the app's version: its bundle and process groups, with
// the instance counts the app has now.
func switchTo(app *cluster.App, v cluster.AppVersion) {
	procs := slices.Clone(v.Processes)
	for i := range procs {
		if j := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == procs[i].Name }); j >= 0 {
			procs[i].Instances = app.Processes[j].Instances
		}
	}
	app.Version, app.Bundle, app.Processes = v.Version, v.Bundle, procs
}

// applyUpdate adds a version to app c.App and rolls to it (opUpdate).
func (s *State) applyUpdate(c *command) result {
	app, ok := s.Apps[c.App]
	if !ok {
		return result{Err: fmt.Errorf("%w: %s", ErrNoSuchApp, c.App)}
	}
	if app.State == cluster.AppKilled {
		return result{Err: fmt.Errorf("%w: app %s was killed; submit it again", ErrBadRequest, app.ID)}
	}
	if err := sameGroups(app.Processes, c.Submit.Processes); err != nil {
		return result{Err: err}
	}
	ensureVersions(app)
	n := app.Versions[len(app.Versions)-1].Version + 1
	v := cluster.AppVersion{Version: n, Bundle: c.Submit.Bundle, Processes: c.Submit.Processes, Created: c.Now}
	app.Versions = append(slices.Clone(app.Versions), v)
	switchTo(app, v)
	// A new generation too: the worker reports the generation it runs,
	// so an executor is ready at the new version only once its new
	// process runs (ready).
	app.Generation++
	app.State = app.DeriveState()
	return result{ID: app.ID}
}

// sameGroups refuses an update that adds or drops process groups: scale
// them, or submit a new app.
func sameGroups(have, want []cluster.Process) error {
	names := func(ps []cluster.Process) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		slices.Sort(out)
		return out
	}
	if a, b := names(have), names(want); !slices.Equal(a, b) {
		return fmt.Errorf("%w: the new bundle's process groups %q differ from the app's %q: an update keeps the groups (submit a new app to change them)", ErrBadRequest, b, a)
	}
	return nil
}

// applyRollback goes back to an earlier version (opRollback).
func (s *State) applyRollback(c *command) result {
	app, ok := s.Apps[c.App]
	if !ok {
		return result{Err: fmt.Errorf("%w: %s", ErrNoSuchApp, c.App)}
	}
	if app.State == cluster.AppKilled {
		return result{Err: fmt.Errorf("%w: app %s was killed; submit it again", ErrBadRequest, app.ID)}
	}
	ensureVersions(app)
	rb := c.Rollback
	target := rb.Version
	if target == 0 {
		for i := len(app.Versions) - 1; i >= 0; i-- {
			if v := app.Versions[i]; v.Version < app.Version && v.RolledBack.IsZero() {
				target = v.Version
				break
			}
		}
		if target == 0 {
			return result{Err: fmt.Errorf("%w: app %s has no version before %d to roll back to (see gear app history %s)", ErrBadRequest, app.ID, app.Version, app.ID)}
		}
	}
	v := version(app, target)
	if v == nil {
		return result{Err: fmt.Errorf("%w: app %s has no version %d (see gear app history %s)", ErrBadRequest, app.ID, target, app.ID)}
	}
	if target == app.Version {
		return result{Err: fmt.Errorf("%w: app %s runs version %d already", ErrConflict, app.ID, target)}
	}
	app.Versions = slices.Clone(app.Versions)
	if rb.Auto {
		cur := version(app, app.Version)
		cur.RolledBack, cur.Reason = c.Now, rb.Reason
	}
	switchTo(app, *v)
	app.Generation++
	for i := range app.Executors {
		// A failed new instance is replaced, not moved elsewhere.
		app.Executors[i].RescheduleDue = false
	}
	app.State = app.DeriveState()
	return result{ID: app.ID}
}

// failing reports whether an executor's instance failed: gave up, crashed
// twice in a row, or fails its health check (the worker reports failing
// only after the check's failures in a row, past its start grace).
func failing(e cluster.Executor) bool {
	return e.State == cluster.Failed || e.State == cluster.Backoff && e.Crashes >= 2 || e.Health == cluster.HealthFailing
}

// rollbacks lists the automatic rollbacks due: an app rolling to a
// version that has an earlier good one, with an executor of the new
// version that fails at its current generation.
func rollbacks(st *State) []command {
	var out []command
	for _, id := range sortedAppIDs(st) {
		app := st.Apps[id]
		if app.State == cluster.AppKilled || app.Version <= 1 {
			continue
		}
		cur := version(app, app.Version)
		if cur == nil || !cur.RolledBack.IsZero() || !slices.ContainsFunc(app.Versions, func(v cluster.AppVersion) bool { return v.Version < app.Version && v.RolledBack.IsZero() }) {
			continue
		}
		for _, e := range app.Executors {
			// Only a failure reported for the instance the executor is
			// meant to run now counts: right after a rollback the
			// executor moved back still carries its failed report of the
			// rolled-back version until its worker reports the new
			// generation, and taking that for a failure of this version
			// would roll back once more, past a good version.
			if e.Version == app.Version && e.Worker != "" && e.Observed == e.Generation && failing(e) {
				reason := e.LastError
				if reason == "" {
					reason = e.LastExit
				}
				out = append(out, command{Op: opRollback, App: id, Rollback: &rollbackCmd{Auto: true,
					Reason: fmt.Sprintf("executor %s of version %d failed on worker %s: %s", e.ID, app.Version, e.Worker, shorten(reason))}})
				break
			}
		}
	}
	return out
}

// handleUpdate adds the body's bundle as a new version of app {id} and
// rolls to it; it answers the app.
func (m *Master) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var req cluster.UpdateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := m.validateSubmit(r.Context(), &req); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if _, err := m.apply(command{Op: opUpdate, App: id, Submit: &req}); err != nil {
		writeError(w, err)
		return
	}
	m.log.Info("application update", "app", id, "bundle", req.Bundle.Digest)
	m.writeApp(w, id)
}

// handleRollback rolls app {id} back to the body's version.
func (m *Master) handleRollback(w http.ResponseWriter, r *http.Request) {
	var req cluster.RollbackRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	id := r.PathValue("id")
	if _, err := m.apply(command{Op: opRollback, App: id, Rollback: &rollbackCmd{Version: req.Version}}); err != nil {
		writeError(w, err)
		return
	}
	m.log.Info("application rollback", "app", id, "version", req.Version)
	m.writeApp(w, id)
}

func (m *Master) writeApp(w http.ResponseWriter, id string) {
	var app *cluster.App
	m.fsm.read(func(s *State) {
		if a := s.Apps[id]; a != nil {
			ca := *a
			ca.Executors = slices.Clone(a.Executors) // apply writes executors in place
			app = &ca
		}
	})
	writeJSON(w, app)
}
