package master

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// startMasters starts a group of n masters in this process on loopback,
// calls setup on each between New and Run (for test hooks), and closes them
// when the test ends.
func startMasters(t *testing.T, n int, timeout time.Duration, setup func(i int, m *Master)) []*Master {
	t.Helper()
	addrs := freeAddrs(t, n)
	dir := t.TempDir()
	ms := make([]*Master, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, port, _ := net.SplitHostPort(a)
			var p int
			fmt.Sscan(port, &p)
			ms[i], errs[i] = New(context.Background(), Options{IP: "127.0.0.1", Port: p, Masters: addrs,
				DataDir: filepath.Join(dir, fmt.Sprint(i)), FailoverTimeout: timeout, Logger: quietLogger()})
		}()
	}
	wg.Wait()
	for i, m := range ms {
		if errs[i] != nil {
			t.Fatalf("master %d: %v", i, errs[i])
		}
		t.Cleanup(func() { _ = m.Close() })
		if setup != nil {
			setup(i, m)
		}
		go func() { _ = m.Run(context.Background()) }()
	}
	return ms
}

// freeAddrs returns n loopback addresses whose TCP ports were free a moment
// ago, for masters started in this process.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	return addrs
}

// waitUntil polls cond every 20 ms until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// raftLeader is the master of ms whose raft is the leader, nil if none.
func raftLeader(ms []*Master) *Master {
	for _, m := range ms {
		if m.raft.raft.State() == raft.Leader {
			return m
		}
	}
	return nil
}

// waitLeader waits up to 10 s for a leader among ms.
func waitLeader(t *testing.T, ms []*Master) *Master {
	t.Helper()
	var l *Master
	waitUntil(t, 10*time.Second, "leader", func() bool { l = raftLeader(ms); return l != nil })
	return l
}

// followers are the masters of ms other than l, by address.
func followers(ms []*Master, l *Master) []*Master {
	var out []*Master
	for _, m := range ms {
		if m != l {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *Master) int { return strings.Compare(a.Addr(), b.Addr()) })
	return out
}

// killLeaderWantQuickElection closes lead (its port refuses from then on,
// as after kill -9), runs afterKill if set, and wants one of survivors to
// lead before raft's own election timer could have elected it (T/4 of the
// group's failover timeout), and within 4 s.
func killLeaderWantQuickElection(t *testing.T, lead *Master, survivors []*Master, timeout time.Duration, afterKill func()) {
	t.Helper()
	hb, _, _ := raftTiming(timeout)
	killed := time.Now()
	if err := lead.Close(); err != nil {
		t.Fatal(err)
	}
	if afterKill != nil {
		afterKill()
	}
	waitUntil(t, hb, "new leader before raft's own election timer", func() bool { return raftLeader(survivors) != nil })
	t.Logf("new leader %v after the kill (raft's own timer: >= %v)", time.Since(killed).Round(time.Millisecond), hb)
	if d := time.Since(killed); d > 4*time.Second {
		t.Errorf("new leader only %v after the leader's process died, want < 4s", d.Round(time.Millisecond))
	}
}
