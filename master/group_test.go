package master

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
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
