package master

import (
	"context"
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
