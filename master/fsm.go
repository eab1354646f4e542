// The raft FSM: State behind a lock for concurrent readers, applying
// committed entries, and snapshots (encoded outside the lock) and restores.

package master

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/hashicorp/raft"
)

// fsm adapts State to raft.FSM and guards it for concurrent readers.
type fsm struct {
	mu    sync.RWMutex
	state *State
	log   *slog.Logger // nil = slog.Default()
	// refused is the first entry this master did not apply because a
	// newer gear wrote it (under mu); nil when it applied them all.
	refused error
	// events, if set, receives the events derived from every entry.
	events *eventLog
	// version counts the changes to state (applied entries, restores),
	// under mu: readers that cache something derived from the state key
	// it by version (the per-worker index, the reconciler's skip).
	version uint64
	// idx lists each worker's executors for the version it was built at
	// (under idxMu, read under mu): heartbeats look up their worker's
	// executors instead of scanning every app, and build it at most once
	// per version between them.
	idxMu sync.Mutex
	idx   workerIndex
}

func (f *fsm) logger() *slog.Logger {
	if f.log == nil {
		return slog.Default()
	}
	return f.log
}

func (f *fsm) Apply(l *raft.Log) any {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		if v, op, ok := peekVersion(l.Data); ok {
			if verr := checkCommandVersion(l.Index, v, op); verr != nil {
				return f.refuse(verr)
			}
		}
		return result{Err: fmt.Errorf("corrupt log entry %d: %w", l.Index, err)}
	}
	if err := checkCommandVersion(l.Index, c.version(), c.Op); err != nil {
		return f.refuse(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	if f.events == nil {
		return f.state.apply(&c)
	}
	before := f.state.observe(&c)
	res := f.state.apply(&c)
	f.events.appliedEntry(l.Index, f.state.events(&c, before, res))
	return res
}

// refuse records and logs an entry newer than this master knows. From
// then on the master takes no snapshots (see Snapshot), so its log keeps
// the entry and the upgraded master replays it at its next start.
func (f *fsm) refuse(err error) result {
	f.mu.Lock()
	if f.refused == nil {
		f.refused = err
	}
	f.mu.Unlock()
	f.logger().Error("refused a replicated command: upgrade this master", "err", err)
	return result{Err: err}
}

// stale returns the first refused entry's error: this master's state lacks
// it (and everything that entry changed), so it must not decide from it.
func (f *fsm) stale() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.refused
}

// read runs fn with the state read-locked.
func (f *fsm) read(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// readWorker runs fn with the state read-locked and the executors placed
// on worker id (or whose replacement is) found through the per-worker
// index, which it rebuilds first when the state changed since.
func (f *fsm) readWorker(id string, fn func(s *State, refs []execRef)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.idxMu.Lock()
	if !f.idx.built || f.idx.version != f.version {
		f.idx = buildWorkerIndex(f.state, f.version)
	}
	refs := f.idx.byWorker[id]
	f.idxMu.Unlock()
	fn(f.state, refs)
}

// stateVersion is the number of changes applied to the state so far.
func (f *fsm) stateVersion() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.version
}

// snapshotState returns a copy of the state that later applies do not
// change (see clone).
func (f *fsm) snapshotState() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone()
}

// Snapshot copies the state (clone, a few ms for 10 000 apps) while raft
// holds applies back; Persist encodes the copy while applies go on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.refused != nil {
		return nil, fmt.Errorf("no snapshot while a refused entry is kept in the log for the upgraded master to replay: %w", f.refused)
	}
	return &snapshot{state: f.state.clone()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s := newState()
	s.Format = 0 // absent in snapshots written before formats: 1
	err := json.NewDecoder(rc).Decode(s)
	// A snapshot whose fields do not fit this master's types still fills
	// the rest (encoding/json goes on after a type error), Format included:
	// a newer format is the error to report then.
	if ferr := checkStateFormat(s.Format); ferr != nil {
		f.logger().Error("refused a snapshot: upgrade this master", "err", ferr)
		return fmt.Errorf("restore snapshot: %w", ferr)
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	s.Format = stateFormat
	if s.Apps == nil {
		s.Apps = map[string]*cluster.App{}
	}
	if s.Workers == nil {
		s.Workers = map[string]*cluster.Worker{}
	}
	if s.WorkerSecrets == nil {
		s.WorkerSecrets = map[string]string{}
	}
	f.mu.Lock()
	f.state = s
	f.version++
	f.refused = nil // the snapshot holds what the refused entry changed
	f.mu.Unlock()
	if f.events != nil {
		f.events.snapshotRestored()
	}
	return nil
}

// snapshot is a copy of the state that Persist encodes.
type snapshot struct{ state *State }

// encode is the snapshot's bytes: the state as one JSON document.
func (s *snapshot) encode() ([]byte, error) { return json.Marshal(s.state) }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.encode()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
