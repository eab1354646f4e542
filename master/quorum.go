package master

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gear-run/gear/pkg/periodic"
)

// Fencing after a fast failover.
//
// A worker stops its executors when it has had no contact with a leader
// for stop-after-disconnect (0.75 x the failover timeout); a new leader
// reschedules a worker's executors after the failover timeout without its
// heartbeats, counted from the new leader's election at the earliest. For
// that to keep an executor from running twice, the worker's last contact
// must not be later than the new leader's election. A leader cut off from
// the other masters keeps answering the workers it can still reach (a
// worker on its own machine) until its lease runs out, and the host-loss
// detector elects a new leader well before that.
//
// So the leader confirms its quorum all the time (raft's VerifyLeader, a
// heartbeat round to the followers) and tells each worker how long ago it
// last did; the worker counts its contact from then. A confirmation that
// succeeded started before any voter of a newer term voted (that voter
// refuses the old term afterwards), so no worker's contact is later than
// the new leader's election.

// confirmEvery is how often the leader confirms its quorum.
const confirmEvery = 100 * time.Millisecond

// confirmLoop keeps quorumAt fresh while this master leads.
func (m *Master) confirmLoop(ctx context.Context) {
	leading := false
	periodic.Every(ctx, confirmEvery, func(time.Time) {
		if !m.isLeader() {
			leading = false
			m.mu.Lock()
			m.quorumAt = time.Time{}
			m.mu.Unlock()
			return
		}
		start := time.Now()
		if !leading {
			// Just elected: a quorum voted for it within the last tick.
			leading = true
			m.mu.Lock()
			m.quorumAt = start.Add(-confirmEvery)
			m.mu.Unlock()
		}
		if err := m.raft.raft.VerifyLeader().Error(); err != nil {
			return
		}
		m.mu.Lock()
		if start.After(m.quorumAt) {
			m.quorumAt = start
		}
		m.mu.Unlock()
	})
}

// quorumAge is how long ago this leader last confirmed its quorum (the
// time since it became leader before the first confirmation).
func (m *Master) quorumAge() time.Duration {
	m.mu.Lock()
	at := m.quorumAt
	m.mu.Unlock()
	if at.IsZero() {
		return confirmEvery
	}
	return max(time.Since(at), 0)
}

// Reads that confirm leadership.
//
// A leader cut off from the other masters still believes it leads until
// its lease runs out (LeaderLeaseTimeout, a quarter of the failover
// timeout), and the host-loss detector elects a new leader well before
// that: a read it answered from its own state in that window could miss a
// write the new leader had already acknowledged (found by the fault suite,
// test/faults_test.go). So a read of the registry is a ReadIndex read:
// note the commit index, confirm with a heartbeat round that a quorum
// still follows this leader (VerifyLeader), and wait until the state
// machine has applied that index. A leader that has not yet committed an
// entry of its own term may not know the true commit index, so its first
// read in a term goes through the log (a barrier) instead.

// readConfirmTimeout bounds how long a read waits for the confirmation.
const readConfirmTimeout = 5 * time.Second

// confirmed runs h only after this leader has confirmed it still leads
// and its state includes every write committed before the request came;
// otherwise the request fails with ErrNoLeader (the client retries).
func (m *Master) confirmed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := m.readIndex(r.Context()); err != nil {
			writeError(w, err)
			return
		}
		h(w, r)
	}
}

// readIndex makes a linearizable read possible on this master (see above).
func (m *Master) readIndex(ctx context.Context) error {
	rf := m.raft.raft
	term := rf.CurrentTerm()
	m.mu.Lock()
	ready := m.readTerm == term
	m.mu.Unlock()
	if !ready {
		// The barrier is an entry of this term: once it is applied, so
		// is everything committed before it.
		if err := rf.Barrier(readConfirmTimeout).Error(); err != nil {
			return fmt.Errorf("%w: this master could not confirm it still leads (%v); retry in a moment", ErrNoLeader, err)
		}
		m.mu.Lock()
		m.readTerm = term
		m.mu.Unlock()
	}
	index := rf.CommitIndex()
	if err := rf.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: this master could not confirm it still leads (%v); retry in a moment", ErrNoLeader, err)
	}
	if rf.CurrentTerm() != term {
		return fmt.Errorf("%w: leadership changed during the read; retry in a moment", ErrNoLeader)
	}
	deadline := time.Now().Add(readConfirmTimeout)
	for rf.AppliedIndex() < index {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: this master's state lags its commit index %d; retry in a moment", ErrNoLeader, index)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
