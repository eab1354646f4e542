package master

import (
	"testing"
	"time"
)

func TestStallTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	after := 1500 * time.Millisecond
	steps := []struct {
		at           time.Duration
		commit, last uint64
		stalledSince time.Duration // -1 = not stalled
	}{
		{0, 10, 10, -1},                                    // caught up
		{time.Second, 10, 12, -1},                          // behind, just now
		{2 * time.Second, 11, 12, -1},                      // moving: the clock restarts
		{3 * time.Second, 11, 13, -1},                      // behind for 1 s of 1.5 s
		{3500 * time.Millisecond, 11, 13, 2 * time.Second}, // 1.5 s without progress
		{10 * time.Second, 11, 40, 2 * time.Second},        // still stalled, since the same moment
		{11 * time.Second, 12, 40, -1},                     // it moved
		{11 * time.Second, 40, 40, -1},                     // caught up
		{20 * time.Second, 40, 41, -1},                     // a new entry: not stalled yet
		{21 * time.Second, 40, 41, -1},
		{21500 * time.Millisecond, 40, 41, 20 * time.Second},
		{22 * time.Second, 41, 41, -1}, // committed at last
	}
	tr := &stallTracker{after: after}
	for i, s := range steps {
		got := tr.observe(s.commit, s.last, t0.Add(s.at))
		var want time.Time
		if s.stalledSince >= 0 {
			want = t0.Add(s.stalledSince)
		}
		if !got.Equal(want) {
			t.Errorf("step %d (t=%v commit=%d last=%d): stalled since %v, want %v", i, s.at, s.commit, s.last, got, want)
		}
	}
}
