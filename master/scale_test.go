package master

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

// A real master (raft, WAL, gossip) places 10 000 unpinned executors of one
// app: the placements are replicated as several raft entries, each under
// MaxEntrySize, and every executor ends up placed.
func TestPlacing10000ExecutorsGoesInBatchesUnderTheLimit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := New(ctx, Options{IP: "127.0.0.1", DataDir: t.TempDir(), FailoverTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for !m.isLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the lone master did not become leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var workers []*cluster.Worker
	for i := range 3 {
		w := cluster.Worker{ID: fmt.Sprintf("%016x", uint64(0xa1b2c3d4e5f60000)+uint64(i)), Addr: fmt.Sprintf("127.0.0.%d:43210", i+1), CPUs: []int{0, 1, 2, 3}}
		if _, err := m.apply(command{Op: opWorker, Worker: &w}); err != nil {
			t.Fatal(err)
		}
		m.seen(w.ID, time.Now())
		workers = append(workers, &w)
	}
	inPool(m, workers...) // placement wants workers that are alive in gossip too
	lim := m.opts.Limits
	res, err := m.apply(command{Op: opSubmit, Limits: &lim, Submit: &cluster.SubmitRequest{Name: "big", Bundle: cluster.Bundle{Digest: "sha256:x"},
		Processes: []cluster.Process{{Name: "frontend-server", Command: []string{"./server"}, Instances: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.apply(command{Op: opScale, App: res.ID, Limits: &lim, Scale: &cluster.ScaleRequest{Instances: 10000}}); err != nil {
		t.Fatal(err)
	}
	before := m.raft.raft.LastIndex()
	start := time.Now()
	for i := 0; ; i++ {
		if err := m.reconcile(time.Now()); err != nil {
			t.Fatal(err)
		}
		placed := 0
		m.fsm.read(func(s *State) {
			for _, e := range s.Apps[res.ID].Executors {
				if e.Worker != "" {
					placed++
				}
			}
		})
		if placed == 10000 {
			break
		}
		if i > 3 {
			t.Fatalf("only %d of 10000 executors placed after %d rounds", placed, i+1)
		}
	}
	elapsed := time.Since(start)
	after := m.raft.raft.LastIndex()
	entries, biggest := 0, 0
	for idx := before + 1; idx <= after; idx++ {
		var l raft.Log
		if err := m.raft.wal.GetLog(idx, &l); err != nil {
			t.Fatalf("entry %d: %v", idx, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		var c command
		if err := json.Unmarshal(l.Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.Op != opAssign {
			continue
		}
		entries++
		biggest = max(biggest, len(l.Data))
		if len(l.Data) > MaxEntrySize {
			t.Fatalf("entry %d is %d bytes, over %d", idx, len(l.Data), MaxEntrySize)
		}
	}
	if entries < 2 {
		t.Fatalf("10 000 placements went in %d entry: want several, each under the limit", entries)
	}
	t.Logf("placed 10000 executors on 3 workers in %d raft entries (largest %d bytes), committed in %v", entries, biggest, elapsed)
	// An idle round (nothing to change) at this size, for the record.
	start = time.Now()
	for range 20 {
		if err := m.reconcile(time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("an idle reconcile round over 10000 executors takes %v", time.Since(start)/20)
}
