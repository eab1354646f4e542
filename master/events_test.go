package master

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

// applyAll feeds commands to a fresh FSM as raft would (index 1, 2, ...)
// and returns the events its log recorded.
func applyAll(t *testing.T, cmds []command) []cluster.Event {
	t.Helper()
	l := newEventLog(1000)
	f := &fsm{state: newState(), events: l}
	for i, c := range cmds {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		f.Apply(&raft.Log{Index: uint64(i + 1), Data: b})
	}
	evs, _, _ := l.after(eventKey{})
	return evs
}

func appLifecycle() []command {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []command{
		{Op: opWorker, Now: now, Worker: &cluster.Worker{ID: "w1", Addr: "h:1", CPUs: []int{0, 1}}},
		{Op: opSubmit, Now: now, Submit: &cluster.SubmitRequest{Name: "web", Bundle: cluster.Bundle{Digest: "sha256:x"},
			Processes: []cluster.Process{{Name: "web", Command: []string{"x"}, Instances: 2}}}},
		{Op: opAssign, Now: now, Assign: []assignment{{Executor: "1.web.0", Worker: "w1", WorkerAddr: "h:1", CPUs: []int{0}}, {Executor: "1.web.1", Worker: "w1", WorkerAddr: "h:1", CPUs: []int{1}}}},
		{Op: opStatus, Now: now, Worker: &cluster.Worker{ID: "w1"}, Reports: []cluster.ExecutorReport{{ID: "1.web.0", PID: 10, State: cluster.Running}, {ID: "1.web.1", PID: 11, State: cluster.Running}}},
		// The same report again changes nothing: no events.
		{Op: opStatus, Now: now, Worker: &cluster.Worker{ID: "w1"}, Reports: []cluster.ExecutorReport{{ID: "1.web.0", PID: 10, State: cluster.Running}, {ID: "1.web.1", PID: 11, State: cluster.Running}}},
		{Op: opStatus, Now: now, Worker: &cluster.Worker{ID: "w1"}, Reports: []cluster.ExecutorReport{{ID: "1.web.0", State: cluster.Backoff, LastExit: "exit status 3"}, {ID: "1.web.1", PID: 11, State: cluster.Running}}},
		{Op: opScale, Now: now, App: "1", Scale: &cluster.ScaleRequest{Instances: 1}},
		{Op: opKill, Now: now, App: "1"},
		{Op: opKill, Now: now, App: "9"}, // refused: no events
	}
}

func TestEventsFromApply(t *testing.T) {
	evs := applyAll(t, appLifecycle())
	var got []string
	for _, e := range evs {
		if !e.Replicated {
			t.Errorf("event %s from the log is not marked replicated", e.ID)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s>%s %s", e.ID, e.Type, e.Executor, e.From, e.State, e.Reason))
	}
	want := []string{
		"1.0 worker  >registered ",
		"2.0 submit  > ",
		"2.1 executor 1.web.0 >PENDING submitted",
		"2.2 executor 1.web.1 >PENDING submitted",
		"3.0 executor 1.web.0 PENDING>STARTING placed on worker w1, cpus [0]",
		"3.1 executor 1.web.1 PENDING>STARTING placed on worker w1, cpus [1]",
		"4.0 executor 1.web.0 STARTING>RUNNING pid 10",
		"4.1 executor 1.web.1 STARTING>RUNNING pid 11",
		"6.0 executor 1.web.0 RUNNING>BACKOFF exited: exit status 3",
		"7.0 scale  > ",
		"7.1 executor 1.web.1 RUNNING>REMOVED scaled down",
		"8.0 kill  > ",
		"8.1 executor 1.web.0 BACKOFF>STOPPING app killed",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Another master applying the same log derives the same events.
	again := applyAll(t, appLifecycle())
	a, _ := json.Marshal(evs)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Fatalf("two masters derived different events from one log:\n%s\n%s", a, b)
	}
}

func TestEventLogResume(t *testing.T) {
	l := newEventLog(2) // holds 2 to 4 events
	l.appliedEntry(1, []cluster.Event{{Type: "a"}, {Type: "b"}})
	l.local(cluster.Event{Type: "leader"}) // 1.2
	l.appliedEntry(2, nil)
	l.local(cluster.Event{Type: "member"}) // 2.0
	l.appliedEntry(3, []cluster.Event{{Type: "c"}})
	ids := func(evs []cluster.Event) (out []string) {
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	// The fifth append trimmed the buffer to the last 2: up to 1.2 dropped.
	evs, gap, _ := l.after(eventKey{})
	if got := ids(evs); !slices.Equal(got, []string{"2.0", "3.0"}) || !gap {
		t.Fatalf("after nothing: %v gap=%v", got, gap)
	}
	for _, tc := range []struct {
		since string
		want  []string
		gap   bool
	}{
		{"1.0", []string{"2.0", "3.0"}, true},
		{"1.1", []string{"2.0", "3.0"}, true},
		{"1.2", []string{"2.0", "3.0"}, false},
		{"1", []string{"2.0", "3.0"}, false},
		{"2.0", []string{"3.0"}, false},
		{"3.0", nil, false},
		{"9", nil, false},
	} {
		k, err := parseSince(tc.since)
		if err != nil {
			t.Fatal(err)
		}
		evs, gap, _ := l.after(k)
		if got := ids(evs); !slices.Equal(got, tc.want) || gap != tc.gap {
			t.Errorf("since %s: %v gap=%v, want %v gap=%v", tc.since, got, gap, tc.want, tc.gap)
		}
	}
	// Within the buffer, a resume skips exactly what was seen.
	l2 := newEventLog(100)
	l2.appliedEntry(1, []cluster.Event{{Type: "a"}, {Type: "b"}})
	l2.local(cluster.Event{Type: "leader"})
	l2.appliedEntry(2, []cluster.Event{{Type: "c"}})
	k, _ := parseSince("1.1")
	if evs, gap, _ := l2.after(k); !slices.Equal(ids(evs), []string{"1.2", "2.0"}) || gap {
		t.Fatalf("since 1.1: %v gap=%v", ids(evs), gap)
	}
	for _, bad := range []string{"x", "1.x", "1.-1", "-1"} {
		if _, err := parseSince(bad); err == nil || !strings.Contains(err.Error(), "INDEX.SEQ") {
			t.Errorf("since=%q: %v, want an error naming the id format", bad, err)
		}
	}
	// A follower is woken by the next append.
	_, _, wake := l.after(eventKey{index: 3})
	l.appliedEntry(4, []cluster.Event{{Type: "d"}})
	select {
	case <-wake:
	default:
		t.Fatal("an append did not wake the followers")
	}
}

// After a snapshot restore, the events the snapshot covers were never
// derived here: a client resuming from before it is told of the gap.
func TestEventLogAfterSnapshot(t *testing.T) {
	l := newEventLog(100)
	l.appliedEntry(1, []cluster.Event{{Type: "a"}})
	l.snapshotRestored()
	l.appliedEntry(50, []cluster.Event{{Type: "b"}})
	k, _ := parseSince("1.0")
	evs, gap, _ := l.after(k)
	if len(evs) != 1 || evs[0].ID != "50.0" || !gap {
		t.Fatalf("since 1.0 after a snapshot to 49: %+v gap=%v, want 50.0 and a gap", evs, gap)
	}
	k, _ = parseSince("49")
	if _, gap, _ := l.after(k); gap {
		t.Fatal("since 49 (the snapshot's index) reported a gap")
	}
}

// The first event a master records is "0.0" (a local one, before anything
// is applied: its own gossip member, or a worker whose join reached it
// first). A stream without ?since= starts before it; it used to start at
// "0.0" and so left that event out, and `gear events` never showed it.
func TestEventsWithoutSinceIncludeTheFirst(t *testing.T) {
	l := newEventLog(100)
	l.local(cluster.Event{Type: "member", Node: "worker@w-1"})
	l.local(cluster.Event{Type: "member", Node: "master@m"})
	l.appliedEntry(1, []cluster.Event{{Type: "worker"}})
	k, err := parseSince("")
	if err != nil {
		t.Fatal(err)
	}
	evs, gap, _ := l.after(k)
	var got []string
	for _, e := range evs {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, []string{"0.0", "0.1", "1.0"}) || gap {
		t.Fatalf("events without since: %v gap=%v, want 0.0 0.1 1.0", got, gap)
	}
}
