package master

import (
	"crypto/subtle"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// State is the authoritative cluster state that raft replicates. Every
// field changes only through apply, so every master that applied the same
// log holds the same State. Times come from the command (stamped by the
// leader), never from the local clock.
type State struct {
	Apps      map[string]*cluster.App    `json:"apps"`
	Workers   map[string]*cluster.Worker `json:"workers"`
	NextAppID int                        `json:"next_app_id"`
	// WorkerSecrets maps a worker id to the SHA-256 (hex) of the secret
	// its heartbeats carry. Only the hash is replicated; the secret stays
	// in the worker's data dir.
	WorkerSecrets map[string]string `json:"worker_secrets"`
	// Format is the snapshot format (stateFormat, version.go); a snapshot
	// without one is format 1.
	Format int `json:"format"`
	// StoreID is the id in the file:// jar store's marker (storeid.go);
	// "" until the leader first sets it.
	StoreID string `json:"store_id,omitempty"`

	// index maps app id -> executor id -> position in that app's
	// Executors. It is derived (never serialised): built per app on first
	// lookup and dropped whenever the app's executor list is rebuilt.
	index map[string]map[string]int
	// requests maps a submit's request id to the app it made. Derived
	// like index: built on the first lookup, then kept by submit, so that
	// a submit does not scan every app (10 000 submits: 50 million looks).
	requests map[string]string
	// desired is the executors the live apps want (limits' checkCluster),
	// valid while desiredOK: kept by submit, recounted after other ops
	// that may change it (see apply), so that a submit does not walk
	// every app.
	desired   int
	desiredOK bool
}

func newState() *State {
	return &State{Apps: map[string]*cluster.App{}, Workers: map[string]*cluster.Worker{}, WorkerSecrets: map[string]string{}, Format: stateFormat}
}

// Operations of the replicated log.
const (
	opSubmit   = "submit"
	opKill     = "kill"
	opScale    = "scale"
	opRestart  = "restart"
	opAssign   = "assign"
	opUnassign = "unassign"
	opStatus   = "status"
	opWorker   = "worker"
	opBump     = "bump"
	opForget   = "forget"  // remove workers; their executors become unplaced
	opStoreID  = "storeid" // set the file:// jar store's id (once)
	opDisable  = "disable" // take an app out of rotation, or back (Disable)
	// opReschedule moves FAILED executors (Lost) off their worker to be
	// placed on another one (reschedule.go).
	opReschedule = "reschedule"
	// opDrain marks a worker draining or eligible again; opPromote moves
	// executors of a draining worker to their ready replacements; opEvict
	// takes them off it at its deadline (drain.go).
	opDrain   = "drain"
	opPromote = "promote"
	opEvict   = "evict"
	opUnplace = "unreplace" // drop replacements whose worker is not alive
	// opUpdate adds a bundle version to an app and rolls to it;
	// opRollback goes back to an earlier one (update.go).
	opUpdate   = "update"
	opRollback = "rollback"
)

// command is one entry of the replicated log.
type command struct {
	// V is the command format version (commandVersion, version.go), set
	// by encodeCommand; entries without one are version 1.
	V       int                      `json:"v"`
	Op      string                   `json:"op"`
	Now     time.Time                `json:"now"`
	App     string                   `json:"app,omitempty"`
	Submit  *cluster.SubmitRequest   `json:"submit,omitempty"`
	Scale   *cluster.ScaleRequest    `json:"scale,omitempty"`
	Restart *cluster.RestartRequest  `json:"restart,omitempty"`
	Assign  []assignment             `json:"assign,omitempty"`
	Lost    []string                 `json:"lost,omitempty"` // executor ids
	Worker  *cluster.Worker          `json:"worker,omitempty"`
	Reports []cluster.ExecutorReport `json:"reports,omitempty"`
	Gone    []string                 `json:"gone,omitempty"` // executor ids the worker no longer runs
	Bump    string                   `json:"bump,omitempty"` // executor id
	// SecretHash is the hash of the registering worker's secret (opWorker).
	SecretHash string   `json:"secret_hash,omitempty"`
	Forget     []string `json:"forget,omitempty"`   // worker ids (opForget)
	StoreID    string   `json:"store_id,omitempty"` // opStoreID
	Disable    *bool    `json:"disable,omitempty"`  // opDisable: true = out of rotation
	// Limits are the leader's gear.limits.*, checked by submit and scale
	// when they are applied (nil in entries written before limits).
	Limits *Limits `json:"limits,omitempty"`
	// Rollback is opRollback's argument (opUpdate uses Submit).
	Rollback *rollbackCmd `json:"rollback,omitempty"`
	// Drain is opDrain's argument.
	Drain *drainCmd `json:"drain,omitempty"`
}

type assignment struct {
	Executor   string `json:"executor"`
	Worker     string `json:"worker"`
	WorkerAddr string `json:"worker_addr"`
	CPUs       []int  `json:"cpus"`
	Ports      []int  `json:"ports,omitempty"`
	Error      string `json:"error,omitempty"` // set when it could not be placed
	// Replace places the executor's replacement, not the executor: its
	// worker is draining (drain.go).
	Replace bool `json:"replace,omitempty"`
}

// result is what apply returns to the caller of raft.Apply.
type result struct {
	ID  string
	Err error
}

// apply mutates the state; it must be deterministic.
func (s *State) apply(c *command) result {
	switch c.Op {
	case opSubmit, opStatus, opAssign:
		// These keep the live apps' process groups as they are (a submit
		// adds its own to the total itself); the rest may change them,
		// after a limit check counted them.
	default:
		defer func() { s.desiredOK = false }()
	}
	switch c.Op {
	case opSubmit:
		if rid := c.Submit.RequestID; rid != "" {
			// A retry of a submit already applied: the app it made.
			if id, ok := s.appOfRequest(rid); ok {
				return result{ID: id}
			}
		}
		if c.Limits != nil {
			if err := c.Limits.checkApp(c.Submit.Name, c.Submit.Processes); err != nil {
				return result{Err: err}
			}
			if err := c.Limits.checkCluster(s, "", desiredExecutors(c.Submit.Processes)); err != nil {
				return result{Err: err}
			}
		}
		s.NextAppID++
		id := strconv.Itoa(s.NextAppID)
		app := &cluster.App{
			ID: id, Name: c.Submit.Name, State: cluster.AppPending, Bundle: c.Submit.Bundle,
			Processes: c.Submit.Processes, Submitted: c.Now, Args: c.Submit.Args,
			Executors: []cluster.Executor{}, RequestID: c.Submit.RequestID,
		}
		for _, p := range app.Processes {
			for i := 0; i < p.Instances; i++ {
				app.Executors = append(app.Executors, newExecutor(id, p.Name, i))
			}
		}
		ensureVersions(app)
		s.Apps[id] = app
		s.desired += desiredExecutors(app.Processes)
		delete(s.index, id)
		if s.requests != nil && app.RequestID != "" {
			s.requests[app.RequestID] = id
		}
		app.State = app.DeriveState()
		return result{ID: id}
	case opKill:
		app, ok := s.Apps[c.App]
		if !ok {
			return result{Err: fmt.Errorf("%w: %s", ErrNoSuchApp, c.App)}
		}
		if app.State != cluster.AppKilled {
			app.State = cluster.AppKilled
			app.Killed = c.Now
			for i := range app.Executors {
				e := &app.Executors[i]
				if e.Worker == "" {
					e.State = cluster.Stopped
				} else if e.State != cluster.Stopped {
					e.State = cluster.Stopping
				}
			}
		}
		app.State = app.DeriveState()
		return result{ID: app.ID}
	case opScale:
		app, ok := s.Apps[c.App]
		if !ok {
			return result{Err: fmt.Errorf("%w: %s", ErrNoSuchApp, c.App)}
		}
		err := scaleApp(s, app, c.Scale, c.Limits)
		delete(s.index, app.ID)
		app.State = app.DeriveState()
		return result{ID: app.ID, Err: err}
	case opRestart:
		app, ok := s.Apps[c.App]
		if !ok {
			return result{Err: fmt.Errorf("%w: %s", ErrNoSuchApp, c.App)}
		}
		app.Generation++
		app.RestartEnv = c.Restart.Env
		app.State = app.DeriveState()
		return result{ID: app.ID}
	case opDisable:
		app, ok := s.Apps[c.App]
		if !ok {
			return result{Err: fmt.Errorf("%w: %s", ErrNoSuchApp, c.App)}
		}
		if c.Disable == nil {
			return result{Err: fmt.Errorf("disable: the entry says neither disable nor enable")}
		}
		app.Disabled = *c.Disable
		return result{ID: app.ID}
	case opBump:
		if e := s.executor(c.Bump); e != nil {
			if app := s.Apps[e.App]; app != nil {
				e.Generation = app.Generation
				if app.Version > 0 {
					e.Version = app.Version
				}
			}
		}
	case opAssign:
		for _, a := range c.Assign {
			e := s.executor(a.Executor)
			if e == nil {
				continue
			}
			if a.Error != "" {
				e.LastError = a.Error
				continue
			}
			if a.Replace {
				s.applyReplacement(e, a)
				continue
			}
			e.Worker, e.WorkerAddr, e.CPUs, e.Ports = a.Worker, a.WorkerAddr, a.CPUs, a.Ports
			e.State, e.PID, e.LastError = cluster.Starting, 0, ""
		}
	case opUnassign:
		for _, id := range c.Lost {
			if e := s.executor(id); e != nil {
				e.Worker, e.WorkerAddr, e.PID, e.CPUs = "", "", 0, []int{}
				if s.Apps[e.App].State == cluster.AppKilled {
					e.State = cluster.Stopped
				} else {
					e.State = cluster.Lost
				}
			}
		}
	case opWorker:
		w := *c.Worker
		// Checked here too, not only by the heartbeat handler, so that two
		// registrations racing under one id cannot both win.
		if err := s.checkSecret(w.ID, c.SecretHash); err != nil {
			return result{Err: err}
		}
		w.Alive, w.LastSeen, w.Executors, w.FreeCPUs = false, time.Time{}, nil, nil
		if old := s.Workers[w.ID]; old != nil {
			// A restarted worker registers again: still draining.
			w.Draining, w.DrainDeadline = old.Draining, old.DrainDeadline
		}
		s.Workers[w.ID] = &w
		if c.SecretHash != "" {
			s.WorkerSecrets[w.ID] = c.SecretHash
		}
	case opForget:
		forget := map[string]bool{}
		for _, id := range c.Forget {
			forget[id] = true
			delete(s.Workers, id)
			delete(s.WorkerSecrets, id)
		}
		for _, app := range s.Apps {
			for i := range app.Executors {
				e := &app.Executors[i]
				if e.Worker == "" || !forget[e.Worker] {
					continue
				}
				e.Worker, e.WorkerAddr, e.PID, e.CPUs = "", "", 0, []int{}
				if app.State == cluster.AppKilled {
					e.State = cluster.Stopped
				} else {
					e.State = cluster.Lost
				}
			}
		}
	case opDrain:
		return s.applyDrain(c)
	case opUpdate:
		return s.applyUpdate(c)
	case opRollback:
		return s.applyRollback(c)
	case opPromote:
		s.applyPromote(c)
	case opEvict:
		s.applyEvict(c)
	case opUnplace:
		for _, id := range c.Lost {
			if e := s.executor(id); e != nil {
				e.Replacement = nil
			}
		}
	case opReschedule:
		for _, id := range c.Lost {
			if e := s.executor(id); e != nil {
				s.reschedule(e, c.Now)
			}
		}
	case opStoreID:
		if s.StoreID != "" && s.StoreID != c.StoreID {
			return result{Err: fmt.Errorf("%w: the jar store's id is %s already, not %s", ErrConflict, s.StoreID, c.StoreID)}
		}
		s.StoreID = c.StoreID
	case opStatus:
		for _, r := range c.Reports {
			e := s.executor(r.ID)
			if e != nil && e.Worker != c.Worker.ID && e.Replacement != nil {
				reportReplacement(e, c.Worker.ID, r)
				continue
			}
			if e == nil || e.Worker != c.Worker.ID {
				continue // a stale report from a worker it no longer belongs to
			}
			failedNow := r.State == cluster.Failed && e.State != cluster.Failed
			e.PID, e.State, e.Restarts, e.Crashes = r.PID, r.State, r.Restarts, r.Crashes
			e.LastExit, e.LastError, e.LogTail = r.LastExit, r.LastError, r.LogTail
			e.Observed, e.StartedAt = r.Generation, r.StartedAt
			e.Health = r.Health
			if len(r.CPUs) > 0 {
				e.CPUs = r.CPUs
			}
			if failedNow {
				e.RescheduleDue = s.rescheduleLeft(e, c.Now)
			} else if e.State != cluster.Failed {
				e.RescheduleDue = false
			}
		}
		for _, id := range c.Gone {
			e := s.executor(id)
			if e == nil || e.Worker != c.Worker.ID {
				continue
			}
			if s.Apps[e.App].State == cluster.AppKilled {
				e.Worker, e.WorkerAddr, e.PID, e.State = "", "", 0, cluster.Stopped
			}
		}
	default:
		return result{Err: fmt.Errorf("unknown operation %q in the replicated log (is this master older than the others?)", c.Op)}
	}
	// Only the apps whose executors this entry named can have changed
	// state; deriving every app's on every entry would cost the whole
	// cluster's executors per heartbeat.
	touched := map[string]bool{}
	for _, id := range c.executorIDs() {
		touched[appOfExecutor(id)] = true
	}
	for id := range touched {
		if app := s.Apps[id]; app != nil {
			app.State = app.DeriveState()
		}
	}
	return result{}
}

// checkSecret refuses hash for worker id when the id is registered with
// another secret. A worker registered before secrets existed (no hash)
// takes the first one it presents.
func (s *State) checkSecret(id, hash string) error {
	want, ok := s.WorkerSecrets[id]
	if !ok || want == "" {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(hash)) != 1 {
		return fmt.Errorf("%w: worker %s is registered with another secret: its heartbeats are refused; if this is a new machine reusing the id, remove the old one with gear workers remove %s", ErrForbidden, id, id)
	}
	return nil
}

// executorIDs lists the executors an entry names.
func (c *command) executorIDs() []string {
	ids := slices.Clone(c.Lost)
	ids = append(ids, c.Gone...)
	for _, a := range c.Assign {
		ids = append(ids, a.Executor)
	}
	for _, r := range c.Reports {
		ids = append(ids, r.ID)
	}
	if c.Bump != "" {
		ids = append(ids, c.Bump)
	}
	return ids
}

func newExecutor(app, process string, index int) cluster.Executor {
	return cluster.Executor{
		ID: fmt.Sprintf("%s.%s.%d", app, process, index), App: app, Process: process,
		Index: index, State: cluster.Pending, CPUs: []int{},
	}
}

func scaleApp(s *State, app *cluster.App, req *cluster.ScaleRequest, lim *Limits) error {
	if app.State == cluster.AppKilled {
		return fmt.Errorf("%w: app %s was killed; submit it again", ErrBadRequest, app.ID)
	}
	if req.Instances < 0 {
		return fmt.Errorf("%w: instances must be >= 0, got %d", ErrBadRequest, req.Instances)
	}
	name := req.Process
	if name == "" {
		if len(app.Processes) != 1 {
			var names []string
			for _, p := range app.Processes {
				names = append(names, p.Name)
			}
			return fmt.Errorf("%w: app %s has several process groups %v; say which with -process", ErrBadRequest, app.ID, names)
		}
		name = app.Processes[0].Name
	}
	pi := slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == name })
	if pi < 0 {
		return fmt.Errorf("%w: app %s has no process group %q", ErrBadRequest, app.ID, shorten(name))
	}
	if lim != nil {
		if err := lim.checkScale(s, app, name, req.Instances); err != nil {
			return err
		}
	}
	app.Processes[pi].Instances = req.Instances
	kept := []cluster.Executor{}
	have := map[int]bool{}
	for _, e := range app.Executors {
		if e.Process == name && e.Index >= req.Instances {
			continue // dropped: its worker stops it when it is no longer assigned
		}
		if e.Process == name {
			have[e.Index] = true
		}
		kept = append(kept, e)
	}
	for i := 0; i < req.Instances; i++ {
		if !have[i] {
			e := newExecutor(app.ID, name, i)
			e.Generation = app.Generation
			e.Version = app.Version
			kept = append(kept, e)
		}
	}
	sort.SliceStable(kept, func(a, b int) bool {
		if kept[a].Process != kept[b].Process {
			return kept[a].Process < kept[b].Process
		}
		return kept[a].Index < kept[b].Index
	})
	app.Executors = kept
	return nil
}

// liveDesired is the executors the live (not killed) apps want.
func (s *State) liveDesired() int {
	if !s.desiredOK {
		s.desired = 0
		for _, a := range s.Apps {
			if a.State != cluster.AppKilled {
				s.desired += desiredExecutors(a.Processes)
			}
		}
		s.desiredOK = true
	}
	return s.desired
}

// appOfRequest is the app a submit with request id rid made.
func (s *State) appOfRequest(rid string) (string, bool) {
	if s.requests == nil {
		s.requests = make(map[string]string, len(s.Apps))
		for id, a := range s.Apps {
			if a.RequestID != "" {
				s.requests[a.RequestID] = id
			}
		}
	}
	id, ok := s.requests[rid]
	return id, ok
}

// executor finds an executor by id ("<app>.<process>.<index>"): the app
// id is the part before the first dot (app ids are numbers, process group
// names have no dots), its position comes from the index.
func (s *State) executor(id string) *cluster.Executor {
	appID := appOfExecutor(id)
	app := s.Apps[appID]
	if app == nil {
		return nil
	}
	idx, ok := s.index[appID]
	if !ok {
		idx = make(map[string]int, len(app.Executors))
		for i := range app.Executors {
			idx[app.Executors[i].ID] = i
		}
		if s.index == nil {
			s.index = map[string]map[string]int{}
		}
		s.index[appID] = idx
	}
	i, ok := idx[id]
	if !ok || i >= len(app.Executors) || app.Executors[i].ID != id {
		return nil
	}
	return &app.Executors[i]
}

// appOfExecutor is the app id part of an executor id.
func appOfExecutor(id string) string {
	if i := strings.IndexByte(id, '.'); i >= 0 {
		return id[:i]
	}
	return id
}

// clone copies the state for readers outside the lock: the maps, the apps,
// their process groups and executors, the workers, the worker secrets. Slices and maps inside
// an executor, a process group or a worker (CPUs, LogTail, Command, Env)
// are shared: apply only ever replaces them, never writes into them.
// A JSON round trip did the same at 50 ms per copy for 10 000 executors,
// and the reconciler copies several times per round.
func (s *State) clone() *State {
	c := &State{
		Apps:          make(map[string]*cluster.App, len(s.Apps)),
		Workers:       make(map[string]*cluster.Worker, len(s.Workers)),
		NextAppID:     s.NextAppID,
		WorkerSecrets: maps.Clone(s.WorkerSecrets),
		Format:        s.Format,
		StoreID:       s.StoreID,
	}
	if c.WorkerSecrets == nil {
		c.WorkerSecrets = map[string]string{}
	}
	for id, a := range s.Apps {
		ca := copyApp(a) // apps.go
		c.Apps[id] = &ca
	}
	for id, w := range s.Workers {
		cw := *w
		c.Workers[id] = &cw
	}
	return c
}
