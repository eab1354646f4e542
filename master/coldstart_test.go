package master

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A fresh group elects its first leader without waiting for raft's
// randomised election timeout: with T = 40 s, raft's own first campaign
// cannot start before T/4 = 10 s, so a leader well before that was made
// by campaignOnColdStart.
func TestColdStartCampaignsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	const timeout = 40 * time.Second
	hb, _, _ := raftTiming(timeout)
	start := time.Now()
	ms := startMasters(t, 3, timeout, nil)
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.Addr())
	}
	deadline := start.Add(hb * 8 / 10)
	for {
		for _, m := range ms {
			if m.raft.raft.State() == raft.Leader {
				t.Logf("leader %s after %s (raft's own first election: >= %s)", m.Addr(), time.Since(start), hb)
				if m.Addr() != minAddr(addrs) {
					t.Errorf("leader %s, want the lowest-addressed master %s", m.Addr(), minAddr(addrs))
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader %s after start; raft's own election timer would fire at %s", time.Since(start), hb)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func minAddr(addrs []string) string {
	lo := addrs[0]
	for _, a := range addrs[1:] {
		lo = min(lo, a)
	}
	return lo
}

// A master restarted on a data dir with history does not campaign early:
// with T = 40 s raft's own timer cannot elect it before 10 s, so a leader
// within 2 s would be the cold-start campaign acting where it must not.
func TestColdStartLeavesAGroupWithHistoryToRaft(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	const timeout = 40 * time.Second
	dir := t.TempDir()
	opts := Options{IP: "127.0.0.1", DataDir: dir, FailoverTimeout: timeout, Logger: quietLogger()}
	m, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.Run(context.Background()) }()
	deadline := time.Now().Add(8 * time.Second)
	for m.raft.raft.State() != raft.Leader {
		if time.Now().After(deadline) {
			_ = m.Close()
			t.Fatal("a fresh single master did not campaign at once")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, port, _ := net.SplitHostPort(m.Addr())
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(port, &opts.Port)
	opts.Masters = []string{m.Addr()}
	m2, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Close() })
	go func() { _ = m2.Run(context.Background()) }()
	until := time.Now().Add(2 * time.Second)
	for time.Now().Before(until) {
		if m2.raft.raft.State() == raft.Leader {
			t.Fatal("a master with history campaigned before raft's election timer")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
