package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/master"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/datadir"
)

// When a later step of local mode fails (here: the first worker's data dir
// cannot be made), the master it already started is closed: its port,
// raft and data dir are free again.
func TestLocalReleasesTheMasterWhenAWorkerFails(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master")
	}
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "worker-0"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	cfg := config.Default()
	cfg.Masters = []string{addr}
	cfg.FailoverTimeout = 2 * time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	err = local(context.Background(), io.Discard, &cfg, log, 1, port, base)
	if err == nil || !strings.Contains(err.Error(), "local worker 0") {
		t.Fatalf("local with an unusable worker data dir: err = %v, want the worker's error", err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the master's port %s is still held: %v", addr, err)
	}
	_ = ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("the master's gossip port %s is still held: %v", addr, err)
	}
	_ = pc.Close()
	lock, err := datadir.Lock(filepath.Join(base, "master"))
	if err != nil {
		t.Fatalf("the master's data dir is still locked: %v", err)
	}
	_ = lock.Close()
	// Raft's files are free too: a master starts on the same data dir.
	started := make(chan error, 1)
	go func() {
		m, err := master.New(context.Background(), master.Options{IP: "127.0.0.1", Port: port, DataDir: filepath.Join(base, "master"), Logger: log})
		if err == nil {
			err = m.Close()
		}
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("a master on the same data dir: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a master on the same data dir hangs: the local master still holds it")
	}
}
