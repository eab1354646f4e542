package master

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// assignments is the heartbeat reply for worker id: the leader, the
// masters, and what the worker should run now. have is the digest of the
// assignments the worker holds (cluster.AssignmentsDigestHeader; "" from
// workers that do not send one): when they are still those, the reply
// says so instead of listing them. The digest of each worker's
// assignments is kept until the state changes, so a steady heartbeat
// neither lists nor encodes them.
func (m *Master) assignments(id, have string) cluster.HeartbeatReply {
	reply := cluster.HeartbeatReply{Leader: m.self, Masters: m.raft.voters()}
	m.fillAssignments(&reply, id, have)
	return reply
}

// fillAssignments sets what assignments answers about the state.
func (m *Master) fillAssignments(reply *cluster.HeartbeatReply, id, have string) {
	m.fsm.readWorker(id, func(s *State, refs []execRef) {
		if w := s.Workers[id]; w != nil {
			reply.Draining = w.Draining
		}
		if have == "" {
			reply.Assignments = assignmentsOf(id, refs)
			return
		}
		version := m.fsm.version // read-locked by readWorker
		digest, ok := m.digests.get(id, version)
		if !ok {
			reply.Assignments = slimAssignments(assignmentsOf(id, refs))
			digest = assignmentsDigest(reply.Assignments)
			m.digests.put(id, version, digest)
		}
		reply.AssignmentsDigest = digest
		if digest == have {
			reply.Assignments, reply.AssignmentsUnchanged = nil, true
		} else if reply.Assignments == nil {
			reply.Assignments = slimAssignments(assignmentsOf(id, refs))
		}
	})
}

// slimAssignments clears, for workers that send digests (and so are new
// enough not to read them), the executors' fields that only say how the
// worker itself last reported them (state, pid, start time, log tail,
// health...): a status report then leaves the assignments, and their
// digest, unchanged, and the replies during a start of many executors say
// "unchanged" instead of listing every executor again.
func slimAssignments(as []cluster.Assignment) []cluster.Assignment {
	for i := range as {
		e := &as[i].Executor
		e.PID, e.State, e.LastExit, e.LastError, e.LogTail = 0, "", "", "", nil
		e.Observed, e.StartedAt, e.Health = 0, time.Time{}, ""
		e.Reschedules, e.Replacement, e.RescheduleDue = nil, nil, false
	}
	return as
}

// assignmentsDigest identifies a worker's assignments (SHA-256 of their
// JSON encoding).
func assignmentsDigest(as []cluster.Assignment) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(as)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// digestCache holds each worker's assignments digest at the state
// version it was computed for.
type digestCache struct {
	mu sync.Mutex
	m  map[string]versionedDigest
}

type versionedDigest struct {
	version uint64
	digest  string
}

func (c *digestCache) get(id string, version uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[id]
	return d.digest, ok && d.version == version
}

func (c *digestCache) put(id string, version uint64, digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]versionedDigest{}
	}
	c.m[id] = versionedDigest{version, digest}
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
