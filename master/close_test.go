package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/datadir"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// portFree binds addr's TCP port and its UDP twin (gossip) and lets go.
func portFree(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP %s still held after Close: %v", addr, err)
	}
	_ = ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP %s still held after Close: %v", addr, err)
	}
	_ = pc.Close()
}

// closeTwiceConcurrently calls Close from two goroutines and waits for
// both, with a deadline.
func closeTwiceConcurrently(t *testing.T, m *Master) {
	t.Helper()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}

// New then Close (twice, concurrently, and once more) releases the port,
// raft, gossip and the data-dir lock: a new master starts on the same
// port and data dir.
func TestCloseReleasesPortAndDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	dir := t.TempDir()
	opts := Options{IP: "127.0.0.1", DataDir: dir, FailoverTimeout: 2 * time.Second, Logger: quietLogger()}
	m, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr()
	closeTwiceConcurrently(t, m)
	if err := m.Close(); err != nil {
		t.Fatalf("third Close: %v", err)
	}
	if err := m.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
	portFree(t, addr)
	lock, err := datadir.Lock(dir)
	if err != nil {
		t.Fatalf("data dir still locked after Close: %v", err)
	}
	_ = lock.Close()

	_, port, _ := net.SplitHostPort(addr)
	opts.Port, _ = strconv.Atoi(port)
	// A lock left behind (raft-wal's meta.db flock) makes New wait forever.
	type made struct {
		m   *Master
		err error
	}
	again := make(chan made, 1)
	go func() {
		m2, err := New(context.Background(), opts)
		again <- made{m2, err}
	}()
	select {
	case r := <-again:
		if r.err != nil {
			t.Fatalf("a new master on the same port and data dir: %v", r.err)
		}
		if err := r.m.Close(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a new master on the same data dir hangs: the closed one still holds a lock in it")
	}
}

// Close ends a running Run, also when Run's context ends at the same
// time, and Run returns without error.
func TestCloseEndsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	m, err := New(context.Background(), Options{IP: "127.0.0.1", DataDir: t.TempDir(), FailoverTimeout: 2 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	waitRunning(t, m)
	go cancel()
	closeTwiceConcurrently(t, m)
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end after Close")
	}
	portFree(t, addr)
}

// waitRunning polls until Run has taken over the master's lifetime.
func waitRunning(t *testing.T, m *Master) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		running := m.life.Begun()
		if running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never started")
		}
		time.Sleep(time.Millisecond)
	}
}
