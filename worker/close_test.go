package worker

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

	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/datadir"
)

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

func newTestWorker(t *testing.T, dir string, port int) *Worker {
	t.Helper()
	w, err := New(context.Background(), Options{
		IP: "127.0.0.1", Port: port, Masters: []string{closedPort(t)}, DataDir: dir,
		FailoverTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func closeTwice(t *testing.T, w *Worker) {
	t.Helper()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := w.Close(); err != nil {
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

// New then Close twice frees the port (TCP and gossip UDP) and the
// data-dir lock: a new worker starts on the same port and data dir.
func TestCloseReleasesPortAndDataDir(t *testing.T) {
	dir := t.TempDir()
	w := newTestWorker(t, dir, 0)
	// Options left zero take config.Default's values.
	def := config.Default()
	if w.opts.HeartbeatInterval != def.Worker.HeartbeatInterval || w.opts.OnExit != def.Worker.OnExit ||
		w.opts.StopAfterDisconnect != 1500*time.Millisecond || w.stopTimeout() != def.Executor.StopTimeout ||
		w.opts.LogMaxFiles != def.Executor.LogMaxFiles || w.opts.LogMaxSize != def.Executor.LogMaxSize {
		t.Fatalf("defaults: %+v", w.opts)
	}
	addr := w.Addr()
	closeTwice(t, w)
	if err := w.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
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
	lock, err := datadir.Lock(dir)
	if err != nil {
		t.Fatalf("data dir still locked after Close: %v", err)
	}
	_ = lock.Close()
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	closeTwice(t, newTestWorker(t, dir, port))
}

// Close ends a running Run (also while its context ends) and waits for it.
func TestCloseEndsRun(t *testing.T) {
	w := newTestWorker(t, t.TempDir(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if w.life.Begun() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never started")
		}
		time.Sleep(time.Millisecond)
	}
	go cancel()
	closeTwice(t, w)
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end after Close")
	}
}
