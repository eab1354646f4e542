package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A master whose raft log cannot be written (here: every append fails as
// on a full disk) does not lead again, not even when told to campaign at
// once, which is the election raft's peers grant most readily; one of the
// healthy masters leads and takes writes, and the broken one rejoins once
// its log works again. Before voteTransport the broken master won that
// election (its log is as up to date as anyone's), failed its first append
// and stepped down, again and again.
func TestBrokenLogDoesNotCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	const n = 3
	var full [n]atomic.Bool
	ms := startMasters(t, n, 2*time.Second, func(i int, m *Master) {
		m.raft.wal.free = func(string) (uint64, error) {
			if full[i].Load() {
				return 0, nil
			}
			return 1 << 40, nil
		}
		m.raft.wal.appendFault = func() error {
			if full[i].Load() {
				return fmt.Errorf("write %s: %w", m.raft.wal.dir, syscall.ENOSPC)
			}
			return nil
		}
	})
	leader := waitLeader(t, ms)
	b := slices.Index(ms, leader)
	broken := ms[b]
	full[b].Store(true)
	if err := broken.raft.raft.Barrier(5 * time.Second).Error(); err == nil {
		t.Fatal("a write on the leader with a failing log succeeded")
	}
	if p := broken.raft.wal.problem(); !errors.Is(p, ErrDiskFull) {
		t.Fatalf("the broken log's problem: %v, want disk full", p)
	}
	waitUntil(t, 5*time.Second, "the broken master to step down", func() bool { return broken.raft.raft.State() != raft.Leader })

	// From here on, count the broken master's leaderships.
	var led atomic.Int32
	obs := make(chan raft.Observation, 16)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool { s, ok := o.Data.(raft.RaftState); return ok && s == raft.Leader })
	broken.raft.raft.RegisterObserver(o)
	defer broken.raft.raft.DeregisterObserver(o)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-obs:
				led.Add(1)
			case <-done:
				return
			}
		}
	}()
	// Told to campaign at once, as a leadership transfer or gear's
	// detector would (raw TimeoutNow, past timeoutNow's own check).
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(broken.self), Addr: []byte(broken.self)}}
	var resp raft.TimeoutNowResponse
	if err := broken.raft.trans.TimeoutNow(raft.ServerID(broken.self), raft.ServerAddress(broken.self), req, &resp); err != nil {
		t.Fatalf("TimeoutNow to the broken master: %v", err)
	}
	// A healthy master leads and commits, and keeps doing so for a few
	// election timeouts while the broken one's timers run.
	until := time.Now().Add(3 * time.Second)
	for time.Now().Before(until) {
		var h int
		waitUntil(t, 10*time.Second, "a healthy leader", func() bool { h = slices.Index(ms, raftLeader(ms)); return h >= 0 && h != b })
		if err := ms[h].raft.raft.Barrier(5 * time.Second).Error(); err != nil && !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
			t.Fatalf("write on the healthy leader %s: %v", ms[h].self, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if k := led.Load(); k != 0 {
		t.Fatalf("the master with the broken log became leader %d times", k)
	}

	// Space is back: the log reopens and the master catches up as a follower.
	full[b].Store(false)
	waitUntil(t, 10*time.Second, "the broken master to reopen its log and catch up", func() bool {
		h := slices.Index(ms, raftLeader(ms))
		return broken.raft.wal.problem() == nil && h >= 0 && h != b &&
			broken.raft.raft.AppliedIndex() >= ms[h].raft.raft.AppliedIndex()
	})
}

// A survivor's vote request is not lost to a pooled connection that the
// other survivor closed when it restarted. X (lowest address, so the first
// to campaign when the leader's process dies) holds a pooled connection to
// Y; Y restarts and catches up; the leader dies.
// Before voteTransport sent the request again, X's went out on the dead
// connection (EOF), Y then campaigned in the same term, and the split vote
// waited for raft's election timer (T/4 = 10 s at T = 40 s).
func TestVoteNotLostToAStaleConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	const timeout = 40 * time.Second
	ms := startMasters(t, 3, timeout, nil)
	l := waitLeader(t, ms)
	rest := followers(ms, l)
	x, y := rest[0], rest[1]
	// x's pool keeps a connection to y: one request on it (an append of an
	// old term, which y ignores).
	var ar raft.AppendEntriesResponse
	stale := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(x.Addr()), Addr: []byte(x.Addr())}, Term: 1}
	if err := x.raft.trans.AppendEntries(raft.ServerID(y.Addr()), raft.ServerAddress(y.Addr()), stale, &ar); err != nil {
		t.Fatalf("a request from %s to %s: %v", x.Addr(), y.Addr(), err)
	}

	// y restarts on its data dir and port, and catches up.
	if err := y.Close(); err != nil {
		t.Fatal(err)
	}
	y2, err := New(context.Background(), y.opts)
	if err != nil {
		t.Fatalf("restart %s: %v", y.Addr(), err)
	}
	t.Cleanup(func() { _ = y2.Close() })
	go func() { _ = y2.Run(context.Background()) }()
	waitUntil(t, 10*time.Second, "the restarted master to follow and catch up", func() bool {
		a, _ := y2.raft.raft.LeaderWithID()
		return string(a) == l.Addr() && y2.raft.raft.AppliedIndex() >= l.raft.raft.AppliedIndex()
	})

	killLeaderWantQuickElection(t, l, []*Master{x, y2}, timeout, nil)
}
