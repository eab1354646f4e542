package master

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/gossip"
)

// eventBuffer is how many events a master keeps at least (up to twice as
// many) for clients that resume
// (GET /api/v1/events?since=ID). A client further behind gets a "gap"
// event saying how far back the buffer reaches.
const eventBuffer = 8192

// eventKey orders events: by raft index, then by sequence within it.
type eventKey struct {
	index uint64
	seq   int
}

// maxSeq stands for "after every event of the index".
const maxSeq = int(^uint(0) >> 1)

// beforeAll is before every event, the first one ("0.0") included.
var beforeAll = eventKey{index: 0, seq: -1}

func (k eventKey) less(o eventKey) bool {
	return k.index < o.index || (k.index == o.index && k.seq < o.seq)
}

func (k eventKey) String() string { return fmt.Sprintf("%d.%d", k.index, k.seq) }

// parseSince reads ?since=: "INDEX.SEQ" is an event id (the events after
// it follow), a bare "INDEX" stands for after every event of that index.
func parseSince(s string) (eventKey, error) {
	if s == "" {
		return beforeAll, nil
	}
	i, q, hasSeq := strings.Cut(s, ".")
	idx, err := strconv.ParseUint(i, 10, 64)
	if err != nil {
		return eventKey{}, fmt.Errorf("%w: since=%q is not an event id (INDEX.SEQ, as in the id field of an event) or a raft index", ErrBadRequest, s)
	}
	if !hasSeq {
		return eventKey{index: idx, seq: maxSeq}, nil
	}
	seq, err := strconv.Atoi(q)
	if err != nil || seq < 0 {
		return eventKey{}, fmt.Errorf("%w: since=%q is not an event id (INDEX.SEQ, as in the id field of an event) or a raft index", ErrBadRequest, s)
	}
	return eventKey{index: idx, seq: seq}, nil
}

// eventLog is one master's bounded ring of recent events. The FSM appends
// the replicated ones as it applies entries (in log order); local ones are
// appended with the last applied index.
type eventLog struct {
	max int // keeps at least max, at most 2*max events

	mu      sync.Mutex
	buf     []cluster.Event // oldest first; at most max
	dropped eventKey        // the newest event evicted from buf
	applied uint64          // last applied raft index
	nextSeq int             // next sequence number at applied
	// restored: the state came from a snapshot (at start or installed by
	// the leader), so the events of the entries it covers were never
	// derived here; the next applied entry marks them as dropped.
	restored bool
	wake     chan struct{} // closed and replaced on every append
	closed   chan struct{} // closed when the master shuts down
	once     sync.Once
}

func newEventLog(max int) *eventLog {
	return &eventLog{max: max, wake: make(chan struct{}), closed: make(chan struct{})}
}

// close ends every follower's stream.
func (l *eventLog) close() { l.once.Do(func() { close(l.closed) }) }

// appliedEntry records the events derived from log entry index.
func (l *eventLog) appliedEntry(index uint64, evs []cluster.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.restored && index > 1 {
		l.buf = l.buf[:0] // older than the snapshot: a gap lies between them and what follows
		l.dropped = eventKey{index - 1, maxSeq}
	}
	l.restored = false
	l.applied, l.nextSeq = index, 0
	for _, e := range evs {
		e.Replicated = true
		l.addLocked(e)
	}
}

// snapshotRestored notes that the state was replaced by a snapshot.
func (l *eventLog) snapshotRestored() {
	l.mu.Lock()
	l.restored = true
	l.mu.Unlock()
}

// local records an event this master saw itself.
func (l *eventLog) local(e cluster.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Replicated = false
	l.addLocked(e)
}

func (l *eventLog) addLocked(e cluster.Event) {
	e.Index, e.Seq = l.applied, l.nextSeq
	l.nextSeq++
	e.ID = eventKey{e.Index, e.Seq}.String()
	if len(l.buf) >= 2*l.max {
		// Trimmed in halves, so an append costs O(1) amortised: the
		// buffer holds between max and 2*max events.
		drop := len(l.buf) - l.max + 1
		last := l.buf[drop-1]
		l.dropped = eventKey{last.Index, last.Seq}
		l.buf = slices.Clone(l.buf[drop:])
	}
	l.buf = append(l.buf, e)
	close(l.wake)
	l.wake = make(chan struct{})
}

// after returns the events after since, whether some were already evicted
// (a gap), and a channel closed at the next append.
func (l *eventLog) after(since eventKey) (evs []cluster.Event, gap bool, wake <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.buf, since, func(e cluster.Event, k eventKey) int {
		ek := eventKey{e.Index, e.Seq}
		switch {
		case ek.less(k):
			return -1
		case k.less(ek):
			return 1
		}
		return 0
	})
	for i < len(l.buf) && !since.less(eventKey{l.buf[i].Index, l.buf[i].Seq}) {
		i++
	}
	gap = l.dropped != (eventKey{}) && since.less(l.dropped)
	return slices.Clone(l.buf[i:]), gap, l.wake
}

// handleEvents streams this master's events as JSON lines: those after
// ?since= (default: all it holds), then, with ?follow=1, new ones as they
// happen, with an empty line every few seconds while nothing happens (so
// a client can tell a quiet stream from a dead one).
func (m *Master) handleEvents(w http.ResponseWriter, r *http.Request) {
	sinceArg := r.URL.Query().Get("since")
	since, err := parseSince(sinceArg)
	if err != nil {
		writeError(w, err)
		return
	}
	follow := false
	if f := r.URL.Query().Get("follow"); f != "" {
		if follow, err = strconv.ParseBool(f); err != nil {
			writeError(w, fmt.Errorf("%w: follow=%q is not true or false (1 or 0)", ErrBadRequest, f))
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Gear-Master", m.self)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	keepalive := time.NewTicker(eventKeepalive)
	defer keepalive.Stop()
	first := true
	for {
		evs, gap, wake := m.events.after(since)
		if gap && first && sinceArg != "" {
			_ = enc.Encode(cluster.Event{Type: "gap", Time: time.Now().UTC(), Master: m.self,
				Message: fmt.Sprintf("some events after %s are no longer held by master %s (it keeps the last %d, and none from before its latest snapshot); what follows starts later", sinceArg, m.self, m.events.max)})
		}
		first = false
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return
			}
			since = eventKey{e.Index, e.Seq}
		}
		if err := rc.Flush(); err != nil || !follow {
			return
		}
		select {
		case <-wake:
		case <-keepalive.C:
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-m.events.closed:
			return
		}
	}
}

// eventKeepalive is how often a quiet stream gets an empty line.
const eventKeepalive = 3 * time.Second

// execView is what the events compare of an executor before and after an
// entry.
type execView struct {
	state  cluster.ExecutorState
	worker string
	health cluster.HealthStatus
}

// observe records the executors entry c can change, before it is applied.
func (s *State) observe(c *command) map[string]execView {
	out := map[string]execView{}
	add := func(a *cluster.App) {
		for _, e := range a.Executors {
			out[e.ID] = execView{e.State, e.Worker, e.Health}
		}
	}
	switch c.Op {
	case opKill, opScale, opRestart, opRollback:
		if a := s.Apps[c.App]; a != nil {
			add(a)
		}
	case opForget:
		for _, a := range s.Apps {
			add(a)
		}
	case opSubmit:
	default:
		for _, id := range c.executorIDs() {
			if e := s.executor(id); e != nil {
				out[id] = execView{e.State, e.Worker, e.Health}
			}
		}
	}
	return out
}

// events derives the events of entry c, applied with result res, from the
// executors observed before it. It reads only the entry and the state, so
// every master derives the same events in the same order.
func (s *State) events(c *command, before map[string]execView, res result) []cluster.Event {
	var evs []cluster.Event
	at := c.Now
	if res.Err != nil {
		return nil // refused: nothing changed
	}
	switch c.Op {
	case opSubmit:
		if a := s.Apps[res.ID]; a != nil {
			evs = append(evs, cluster.Event{Type: "submit", Time: at, App: a.ID,
				Message: fmt.Sprintf("app %s %q submitted with %d executor(s) (bundle %s)", a.ID, shorten(a.Name), len(a.Executors), a.Bundle.Digest)})
		}
	case opKill:
		evs = append(evs, cluster.Event{Type: "kill", Time: at, App: c.App, Message: "app " + c.App + " killed"})
	case opScale:
		proc := c.Scale.Process
		if proc == "" {
			proc = "its process group"
		}
		evs = append(evs, cluster.Event{Type: "scale", Time: at, App: c.App,
			Message: fmt.Sprintf("app %s: %s scaled to %d instance(s)", c.App, shorten(proc), c.Scale.Instances)})
	case opRestart:
		gen := 0
		if a := s.Apps[c.App]; a != nil {
			gen = a.Generation
		}
		evs = append(evs, cluster.Event{Type: "restart", Time: at, App: c.App,
			Message: fmt.Sprintf("app %s: rolling restart to generation %d", c.App, gen)})
	case opDisable:
		if c.Disable != nil && *c.Disable {
			evs = append(evs, cluster.Event{Type: "disable", Time: at, App: c.App, Message: "app " + c.App + " disabled: out of rotation (its executors' /ecv say UNAVAILABLE)"})
		} else {
			evs = append(evs, cluster.Event{Type: "enable", Time: at, App: c.App, Message: "app " + c.App + " enabled: back in rotation"})
		}
	case opWorker:
		evs = append(evs, cluster.Event{Type: "worker", Time: at, Worker: c.Worker.ID, State: "registered",
			Message: fmt.Sprintf("worker %s registered at %s with cpus %v", c.Worker.ID, c.Worker.Addr, c.Worker.CPUs)})
	case opUpdate:
		if a := s.Apps[c.App]; a != nil {
			evs = append(evs, cluster.Event{Type: "update", Time: at, App: c.App, State: fmt.Sprint(a.Version),
				Message: fmt.Sprintf("app %s: rolling update to version %d (bundle %s)", c.App, a.Version, a.Bundle.Digest)})
		}
	case opRollback:
		if a := s.Apps[c.App]; a != nil {
			msg := fmt.Sprintf("app %s: rolling back to version %d (bundle %s)", c.App, a.Version, a.Bundle.Digest)
			if c.Rollback.Auto {
				msg = fmt.Sprintf("app %s: %s; rolling back to version %d automatically", c.App, c.Rollback.Reason, a.Version)
			}
			evs = append(evs, cluster.Event{Type: "rollback", Time: at, App: c.App, State: fmt.Sprint(a.Version), Reason: c.Rollback.Reason, Message: msg})
		}
	case opDrain:
		if c.Drain.Draining {
			w := s.Workers[c.Drain.Worker]
			evs = append(evs, cluster.Event{Type: "worker", Time: at, Worker: c.Drain.Worker, State: "draining",
				Message: fmt.Sprintf("worker %s draining: its executors move elsewhere, what remains at %s is stopped", c.Drain.Worker, w.DrainDeadline.UTC().Format(time.RFC3339))})
		} else {
			evs = append(evs, cluster.Event{Type: "worker", Time: at, Worker: c.Drain.Worker, State: "eligible",
				Message: "worker " + c.Drain.Worker + " eligible again"})
		}
	case opForget:
		for _, id := range c.Forget {
			evs = append(evs, cluster.Event{Type: "worker", Time: at, Worker: id, State: "removed",
				Message: "worker " + id + " removed; its executors are placed elsewhere"})
		}
	}
	// Executor state changes, by executor id.
	after := map[string]*cluster.Executor{}
	switch c.Op {
	case opSubmit:
		if a := s.Apps[res.ID]; a != nil {
			for i := range a.Executors {
				after[a.Executors[i].ID] = &a.Executors[i]
			}
		}
	case opKill, opScale, opRestart, opForget, opRollback:
		for id := range before {
			after[id] = s.executor(id)
		}
		if c.Op == opScale {
			if a := s.Apps[c.App]; a != nil {
				for i := range a.Executors {
					after[a.Executors[i].ID] = &a.Executors[i]
				}
			}
		}
	default:
		for id := range before {
			after[id] = s.executor(id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(after)) {
		e, was := after[id], before[id]
		if e == nil {
			if was.state != "" {
				evs = append(evs, cluster.Event{Type: "executor", Time: at, App: appOfExecutor(id), Executor: id, Worker: was.worker,
					From: string(was.state), State: "REMOVED", Reason: "scaled down", Message: "executor " + id + " removed (scaled down)"})
			}
			continue
		}
		if c.Op == opStatus && was.state != "" && e.Health != was.health && e.Health != "" && (was.health != "" || e.Health != cluster.HealthUnknown) {
			evs = append(evs, cluster.Event{Type: "health", Time: at, App: appOfExecutor(id), Executor: id, Worker: e.Worker,
				State: string(e.Health), Message: fmt.Sprintf("executor %s health %s", id, e.Health)})
		}
		if e.State == was.state && (e.Worker == was.worker || c.Op != opPromote && c.Op != opEvict) {
			continue
		}
		reason := execReason(c, e)
		msg := fmt.Sprintf("executor %s %s", id, e.State)
		if was.state != "" {
			msg = fmt.Sprintf("executor %s %s -> %s", id, was.state, e.State)
		}
		if e.Worker != "" {
			msg += " on worker " + e.Worker
		}
		if reason != "" {
			msg += ": " + reason
		}
		evs = append(evs, cluster.Event{Type: "executor", Time: at, App: e.App, Executor: id, Worker: e.Worker,
			From: string(was.state), State: string(e.State), Reason: reason, Message: msg})
	}
	return evs
}

// execReason says why executor e changed state in entry c.
func execReason(c *command, e *cluster.Executor) string {
	switch c.Op {
	case opKill:
		return "app killed"
	case opAssign:
		return fmt.Sprintf("placed on worker %s, cpus %v", e.Worker, e.CPUs)
	case opUnassign:
		return "its worker stayed unreachable past the failover timeout"
	case opForget:
		return "its worker was removed"
	case opReschedule:
		return e.LastError
	case opPromote:
		return "its worker drains: moved to its replacement"
	case opEvict:
		if e.Worker == "" {
			return e.LastError
		}
		return "its worker drains and the deadline passed: moved to its replacement"
	case opSubmit:
		return "submitted"
	}
	switch e.State {
	case cluster.Failed:
		if e.LastError != "" {
			return e.LastError
		}
		return e.LastExit
	case cluster.Backoff, cluster.Stopped:
		if e.LastExit != "" {
			return "exited: " + e.LastExit
		}
		return e.LastError
	case cluster.Running:
		if e.Restarts > 0 {
			return fmt.Sprintf("pid %d, restart %d", e.PID, e.Restarts)
		}
		return fmt.Sprintf("pid %d", e.PID)
	}
	return e.LastError
}

// followLeader records this master's leader changes, from raft's
// observations, as local events, and counts them and times failovers:
// the time from losing a leader to knowing the next one, as this master
// sees it.
func (m *Master) followLeader(ctx context.Context, obs <-chan raft.Observation) {
	var last string
	var lostAt time.Time
	had := false // a leader was known before: a later one is a failover
	for {
		var o raft.Observation
		select {
		case <-ctx.Done():
			return
		case o = <-obs:
		}
		lo, ok := o.Data.(raft.LeaderObservation)
		if !ok {
			continue
		}
		// No forwarded request goes out on, or waits on, a connection to
		// a master that is no longer the leader (forward.go).
		m.forwarder().follow(m.forwardTarget())
		leader, at := string(lo.LeaderAddr), time.Now()
		term := uint64(0)
		if r := o.Raft; r != nil {
			term = r.CurrentTerm()
		}
		switch {
		case leader == "":
			if lostAt.IsZero() {
				// A follower lost the leader when it last heard from it,
				// before its timers (or the crash detector) gave up on it.
				lostAt = at
				if lc := lastContact(o.Raft); last != m.self && !lc.IsZero() && lc.Before(at) {
					lostAt = lc
				}
			}
			if last != "" {
				m.events.local(cluster.Event{Type: "leader", Time: at.UTC(), Master: m.self, From: last,
					Message: fmt.Sprintf("master %s lost the leader %s (term %d)", m.self, last, term)})
			}
		case leader != last:
			m.metrics.leaderChanges.Inc()
			msg := fmt.Sprintf("master %s sees %s as leader (term %d)", m.self, leader, term)
			if had && !lostAt.IsZero() {
				d := at.Sub(lostAt)
				m.metrics.failover.Observe(d.Seconds())
				msg += fmt.Sprintf(", %s after losing the previous one", d.Round(time.Millisecond))
			}
			m.events.local(cluster.Event{Type: "leader", Time: at.UTC(), Master: m.self, From: last, State: leader, Message: msg})
			lostAt, had = time.Time{}, true
		}
		last = leader
	}
}

// memberChanged records a gossip membership change as a local event.
func (m *Master) memberChanged(mem gossip.Member, old string) {
	if m.events == nil {
		return
	}
	e := cluster.Event{Type: "member", Time: time.Now().UTC(), Master: m.self, Node: mem.Name, From: old, State: mem.State,
		Message: fmt.Sprintf("gossip member %s (%s) is %s, as master %s sees it", mem.Name, mem.Addr, mem.State, m.self)}
	if old != "" {
		e.Message = fmt.Sprintf("gossip member %s (%s): %s -> %s, as master %s sees it", mem.Name, mem.Addr, old, mem.State, m.self)
	}
	if id, ok := strings.CutPrefix(mem.Name, "worker@"); ok {
		e.Worker = id
	}
	m.events.local(e)
}

func lastContact(r *raft.Raft) time.Time {
	if r == nil {
		return time.Time{}
	}
	return r.LastContact()
}
