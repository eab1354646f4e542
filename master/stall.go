package master

import (
	"context"
	"time"

	"github.com/gear-run/gear/pkg/periodic"
)

// stallTracker tells a commit index that stopped while entries wait
// behind it. Raft's own health (a leader, a quorum of voters in contact)
// says nothing about it: a leader that cannot read its own log back keeps
// its followers in contact and its term, while no write ever commits.
//
// It is pure: observe is fed the indexes and the time, so tests step it
// with a fake clock.
type stallTracker struct {
	after time.Duration // how long the commit index may stand still behind the last index

	commit uint64    // commit index at the last observation
	since  time.Time // when commit was first seen behind the last index with this value
}

// observe records the commit and last log index seen at now, and returns
// the time the commit index stalled, zero when it is not stalled. It is
// stalled when commit < last and commit has not changed for at least
// t.after.
func (t *stallTracker) observe(commit, last uint64, now time.Time) time.Time {
	if commit >= last {
		t.commit, t.since = commit, time.Time{}
		return time.Time{}
	}
	if commit != t.commit || t.since.IsZero() {
		t.commit, t.since = commit, now
	}
	if now.Sub(t.since) >= t.after {
		return t.since
	}
	return time.Time{}
}

// stallLoop samples this master's raft indexes until ctx ends; status
// reports the result as commit_stalled_since.
func (m *Master) stallLoop(ctx context.Context) {
	t := &stallTracker{after: m.opts.FailoverTimeout / 4}
	every := min(max(t.after/10, 10*time.Millisecond), 250*time.Millisecond)
	periodic.Every(ctx, every, func(now time.Time) {
		r := m.raft.raft
		since := t.observe(r.CommitIndex(), r.LastIndex(), now)
		m.mu.Lock()
		m.stalledSince = since
		m.mu.Unlock()
	})
}

// commitStalledSince is when this master's commit index stalled, zero
// when it is not stalled.
func (m *Master) commitStalledSince() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stalledSince
}
