package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
)

func TestQuorumPossible(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // answers: may be alive
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dead := func() string { // refuses: known down
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := l.Addr().String()
		l.Close()
		return a
	}
	up := ln.Addr().String()
	cases := []struct {
		masters []string
		want    bool
	}{
		{[]string{dead(), dead(), dead()}, false},
		{[]string{up, dead(), dead()}, false},
		{[]string{up, up, dead()}, true},
		{[]string{up}, true},
	}
	for i, tc := range cases {
		if got := quorumPossible(tc.masters); got != tc.want {
			t.Errorf("case %d: quorumPossible = %v, want %v", i, got, tc.want)
		}
	}
}

func TestPolicyFor(t *testing.T) {
	def := procs.DefaultPolicy()
	got := policyFor(def, cluster.Process{Restart: "never", MaxRestarts: 2, RestartWindow: time.Minute, MaxAge: time.Hour})
	if got.Restart != "never" || got.MaxRestarts != 2 || got.Window != time.Minute || got.MaxAge != time.Hour || got.BackoffMax != def.BackoffMax {
		t.Fatalf("merged policy %+v", got)
	}
	if got := policyFor(def, cluster.Process{}); got != def {
		t.Fatalf("empty manifest must keep the defaults: %+v", got)
	}
}

// TestSupervisorOptionsJitter: the worker's supervisors get a jitter
// source (procs documents up to 20% jitter; without a Rand there is none).
func TestSupervisorOptionsJitter(t *testing.T) {
	e := &executor{w: &Worker{log: slog.New(slog.DiscardHandler)}}
	a := cluster.Assignment{Executor: cluster.Executor{Restarts: 3, Crashes: 2}}
	opts := e.supervisorOptions(a, nil)
	if opts.Rand == nil {
		t.Fatal("no Rand: backoff jitter is switched off")
	}
	if opts.InitialRestarts != 3 || opts.InitialCrashes != 2 {
		t.Fatalf("restart counts not carried: %+v", opts)
	}
	if x, y := opts.Rand.Float64(), e.supervisorOptions(a, nil).Rand.Float64(); x == y {
		t.Fatalf("two supervisors drew the same jitter %v: not seeded apart", x)
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("fetch: %w", cluster.ErrNoMaster), true},
		{fmt.Errorf("fetch: %w", io.ErrUnexpectedEOF), true},
		{&cluster.APIError{Status: 503}, true},
		{&cluster.APIError{Status: 404, Message: "not found"}, false},
		{errors.New("bundle arrived corrupt"), false},
	}
	for _, tc := range cases {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// The worker secret is created once, private to the worker's user, and
// kept across restarts (a restarted worker keeps its identity).
func TestWorkerSecretKeptInDataDir(t *testing.T) {
	dir := t.TempDir()
	s1, err := workerSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 64 {
		t.Fatalf("secret %q, want 256 bits in hex", s1)
	}
	fi, err := os.Stat(filepath.Join(dir, "worker-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("worker-secret has mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := workerSecret(dir)
	if err != nil || s2 != s1 {
		t.Fatalf("second start read %q, %v; want the same secret", s2, err)
	}
	if other, _ := workerSecret(t.TempDir()); other == s1 {
		t.Fatal("two data dirs got the same secret")
	}
}

// TestWorkerCPUs: the worker's cores are procs.AllowedCPUs (online cores in
// its mask); a configured core outside them is refused by name.
func TestWorkerCPUs(t *testing.T) {
	all, err := procs.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	got, err := workerCPUs(nil)
	if err != nil || !slices.Equal(got, all) {
		t.Fatalf("workerCPUs(nil) = %v, %v; want %v", got, err, all)
	}
	if got, err := workerCPUs([]int{all[0], all[0]}); err != nil || !slices.Equal(got, all[:1]) {
		t.Fatalf("workerCPUs(twice the same) = %v, %v", got, err)
	}
	if _, err := workerCPUs([]int{4095}); err == nil || !strings.Contains(err.Error(), "core 4095") {
		t.Fatalf("a core the worker may not use: %v", err)
	}
}

// A heartbeat answer counts as contact from when the leader last confirmed
// its quorum, and not at all when that is older than the fencing deadline.
func TestLeaderContact(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tt := range []struct {
		name      string
		sent      time.Time
		ageMS     int64
		stopAfter time.Duration
		want      time.Time
		ok        bool
	}{
		{"fresh confirmation", now, 0, 4500 * time.Millisecond, now, true},
		{"confirmed 300ms ago", now, 300, 4500 * time.Millisecond, now.Add(-300 * time.Millisecond), true},
		{"a cut-off leader, unconfirmed past the deadline", now, 4500, 4500 * time.Millisecond, now.Add(-4500 * time.Millisecond), false},
		{"fencing off: any answer counts", now, 60_000, -1, now.Add(-time.Minute), true},
		{"an old master without the field", now, 0, 4500 * time.Millisecond, now, true},
		{"a negative age is treated as none", now, -5, 4500 * time.Millisecond, now, true},
		// The leader saw the heartbeat no earlier than it was sent: a
		// slow answer counts from the send, not from its arrival.
		{"answered 3s after it was sent", now.Add(-3 * time.Second), 100, 4500 * time.Millisecond, now.Add(-3 * time.Second).Add(time.Second), true},
		{"answered within the bound", now.Add(-500 * time.Millisecond), 100, 4500 * time.Millisecond, now.Add(-100 * time.Millisecond), true},
		{"answered after the deadline from its send", now.Add(-6 * time.Second), 0, 4500 * time.Millisecond, now.Add(-5 * time.Second), false},
		{"confirmed before the send", now.Add(-time.Second), 2000, 4500 * time.Millisecond, now.Add(-2 * time.Second), true},
	} {
		got, ok := leaderContact(tt.sent, now, tt.ageMS, tt.stopAfter, time.Second)
		if !got.Equal(tt.want) || ok != tt.ok {
			t.Errorf("%s: (%v, %v), want (%v, %v)", tt.name, got.Sub(now), ok, tt.want.Sub(now), tt.ok)
		}
	}
}

// A heartbeat reply that says the assignments are unchanged assigns the
// ones the worker holds; one that names another digest assigns nothing
// (never an empty list, which would stop every executor) and makes the
// next heartbeat ask for the list.
func TestAssignmentsOfUnchangedReply(t *testing.T) {
	w := &Worker{log: slog.New(slog.DiscardHandler)}
	list := []cluster.Assignment{{Executor: cluster.Executor{ID: "1.web.0"}}}
	if as, ok := w.assignmentsOf(&cluster.HeartbeatReply{Assignments: list, AssignmentsDigest: "d1"}); !ok || len(as) != 1 || w.assignDigest != "d1" {
		t.Fatalf("a full reply: %v %v, digest %q", as, ok, w.assignDigest)
	}
	if as, ok := w.assignmentsOf(&cluster.HeartbeatReply{AssignmentsUnchanged: true, AssignmentsDigest: "d1"}); !ok || len(as) != 1 || as[0].Executor.ID != "1.web.0" {
		t.Fatalf("an unchanged reply: %v %v, want the held list", as, ok)
	}
	if as, ok := w.assignmentsOf(&cluster.HeartbeatReply{AssignmentsUnchanged: true, AssignmentsDigest: "d2"}); ok || as != nil || w.assignDigest != "" {
		t.Fatalf("unchanged for another digest: %v %v, digest %q; want nothing assigned and the digest dropped", as, ok, w.assignDigest)
	}
}

// At most startConcurrency executors of a worker prepare and start at
// once; a slot is given back once (however often release is called), and
// an executor stopped while it waits for one does not start.
func TestStartSlotsBoundConcurrentStarts(t *testing.T) {
	w := &Worker{startSlots: make(chan struct{}, startConcurrency)}
	ctx := t.Context()
	var held []*executor
	for range startConcurrency {
		e := &executor{w: w}
		if !e.acquireStart(ctx) {
			t.Fatal("a free slot was not given")
		}
		held = append(held, e)
	}
	waiting := &executor{w: w}
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan bool, 1)
	go func() { got <- waiting.acquireStart(cctx) }()
	select {
	case <-got:
		t.Fatalf("a start slot beyond the %d was given", startConcurrency)
	case <-time.After(50 * time.Millisecond): // it must still be waiting
	}
	held[0].releaseStart()
	held[0].releaseStart() // twice: gives back one slot only
	if !<-got {
		t.Fatal("a released slot was not given to the waiting executor")
	}
	if len(w.startSlots) != startConcurrency {
		t.Fatalf("%d slots held, want %d", len(w.startSlots), startConcurrency)
	}
	stopped := &executor{w: w}
	cancel()
	if stopped.acquireStart(cctx) {
		t.Fatal("an executor stopped while waiting got a slot")
	}
}
