package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func ids(rs []cluster.ExecutorReport) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// Heartbeats list every report until the leader acknowledges them, then
// nothing while they stay the same and only the changed ones (with the
// removed ids) against the acknowledged digest; a leader that does not
// hold them, or does not take deltas, gets the whole list again.
func TestReportSync(t *testing.T) {
	rep := func(id string, pid int) cluster.ExecutorReport {
		return cluster.ExecutorReport{ID: id, PID: pid, State: cluster.Running, CPUs: []int{}}
	}
	ack := func(out reportsOut, delta bool) *cluster.HeartbeatReply {
		return &cluster.HeartbeatReply{ReportsDigest: out.digest, ReportsDelta: delta}
	}
	var s reportSync
	first := s.prepare([]cluster.ExecutorReport{rep("a", 1), rep("b", 2), rep("c", 3)})
	if first.base != "" || first.header != first.digest || !slices.Equal(ids(first.executors), []string{"a", "b", "c"}) {
		t.Fatalf("first heartbeat: %+v, want the whole list under its digest", first)
	}
	if s.answered(first, ack(first, true)) {
		t.Fatal("an acknowledged list asks for a resend")
	}
	same := s.prepare([]cluster.ExecutorReport{rep("a", 1), rep("b", 2), rep("c", 3)})
	if same.header != "same:"+first.digest || same.executors != nil || same.base != "" {
		t.Fatalf("unchanged reports: %+v, want none and same:<digest>", same)
	}
	// b restarted, c is gone, d started.
	now := []cluster.ExecutorReport{rep("a", 1), rep("b", 5), rep("d", 4)}
	delta := s.prepare(now)
	if delta.base != first.digest || delta.header != delta.digest || delta.digest == first.digest ||
		!slices.Equal(ids(delta.executors), []string{"b", "d"}) || !slices.Equal(delta.removed, []string{"c"}) {
		t.Fatalf("changed reports: base %q header %q executors %v removed %v, want b and d changed and c removed against %q",
			delta.base, delta.header, ids(delta.executors), delta.removed, first.digest)
	}
	if full := (&reportSync{}).prepare(now); full.digest != delta.digest {
		t.Fatalf("a delta names digest %s, the whole list %s: the leader would cache it under another digest", delta.digest, full.digest)
	}
	// Its answer is lost: the next heartbeat is still against the first list.
	again := s.prepare(now)
	if again.base != first.digest || !slices.Equal(ids(again.executors), []string{"b", "d"}) {
		t.Fatalf("after a lost answer: base %q executors %v", again.base, ids(again.executors))
	}
	s.answered(again, ack(again, true))
	if out := s.prepare(now); out.header != "same:"+delta.digest {
		t.Fatalf("after the delta was acknowledged: %+v", out)
	}
	// A new leader holds nothing: it acknowledges nothing, the worker
	// asks for a heartbeat at once and lists everything.
	if !s.answered(s.prepare(now), &cluster.HeartbeatReply{}) {
		t.Fatal("a leader without the reports: no resend asked for")
	}
	if out := s.prepare(now); out.base != "" || out.header != out.digest || len(out.executors) != 3 {
		t.Fatalf("after a new leader: %+v, want the whole list", out)
	}
	// A leader that acknowledges but takes no deltas gets whole lists.
	s.answered(s.prepare(now), ack(s.prepare(now), false))
	if out := s.prepare([]cluster.ExecutorReport{rep("a", 9)}); out.base != "" || len(out.executors) != 1 || out.removed != nil {
		t.Fatalf("to a leader without deltas: %+v, want the whole list", out)
	}
}

// heartbeatWorker is a worker with just what sendHeartbeat needs, with a
// heartbeat timeout of 100 ms.
func heartbeatWorker(masters ...string) *Worker {
	return &Worker{opts: Options{HeartbeatInterval: 50 * time.Millisecond, StopAfterDisconnect: 400 * time.Millisecond},
		client: cluster.NewClient(masters, ""), log: slog.New(slog.DiscardHandler)}
}

func fakeMaster(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// silent is a master that takes heartbeats and never answers, until the
// test ends.
func silent(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	addr := fakeMaster(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // before the server's Close
	return addr
}

func answer(leader string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(cluster.HeartbeatReply{Leader: leader})
	}
}

// The only master answers slower than the heartbeat timeout (a leader on
// a machine busy starting thousands of processes): the heartbeat waits
// for it, within its deadline, instead of giving up and sending again.
func TestHeartbeatWaitsForTheOnlyMaster(t *testing.T) {
	var calls atomic.Int32
	var addr string
	addr = fakeMaster(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(300 * time.Millisecond)
		answer(addr)(w, r)
	})
	w := heartbeatWorker(addr)
	if w.heartbeatTimeout() >= 300*time.Millisecond {
		t.Fatalf("heartbeat timeout %v: the test needs it below the master's 300 ms", w.heartbeatTimeout())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reply, err := w.sendHeartbeat(ctx, cluster.Heartbeat{}, "-", "")
	if err != nil || reply.Leader != addr {
		t.Fatalf("heartbeat to a slow only master: %+v %v", reply, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the master got %d heartbeats, want 1", n)
	}
}

// A leader that does not answer at all (frozen, cut off) is left for the
// other masters after the heartbeat timeout, while the heartbeat to it
// still waits: the first answer counts and the next heartbeat goes to
// the master that gave it.
func TestHeartbeatTriesTheOthersWhileTheLeaderIsSilent(t *testing.T) {
	frozen := silent(t)
	refusing := fakeMaster(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(cluster.ErrorBody{Error: "no leader"})
	})
	next := fakeMaster(t, answer("")) // answers without naming a leader it could be preferred as
	w := heartbeatWorker(frozen, refusing, next)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.sendHeartbeat(ctx, cluster.Heartbeat{}, "-", ""); err != nil {
		t.Fatalf("heartbeat with a frozen leader and a live master: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v, want about the 100 ms heartbeat timeout", took)
	}
	if got := w.client.Preferred(); got != next {
		t.Fatalf("next heartbeats go to %s, want %s, which answered", got, next)
	}
}

// When no master answers, the heartbeat fails by its deadline; when the
// only master refuses the worker (403), at once and with that answer.
func TestHeartbeatFailures(t *testing.T) {
	frozen := silent(t)
	w := heartbeatWorker(frozen, "127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := w.sendHeartbeat(ctx, cluster.Heartbeat{}, "-", ""); err == nil {
		t.Fatal("no master answered, yet no error")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a heartbeat without answers ran %v past its 500 ms deadline", took)
	}
	forbidden := fakeMaster(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(cluster.ErrorBody{Error: "another worker holds this id"})
	})
	w = heartbeatWorker(forbidden, frozen)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	_, err := w.sendHeartbeat(ctx, cluster.Heartbeat{}, "-", "")
	if !answered(err) || !strings.Contains(err.Error(), "another worker") || time.Since(start) > time.Second {
		t.Fatalf("a refused identity: %v after %v, want the 403 at once", err, time.Since(start))
	}
}

// A 400 to a delta (an older master) makes the worker send the whole
// list; a 400 to a whole list, or another failure, does not.
func TestDeltaRefusedByAnOlderMaster(t *testing.T) {
	bad := &cluster.APIError{Status: http.StatusBadRequest, Message: `request body: json: unknown field "reports_base"`}
	delta, full := reportsOut{base: "d1"}, reportsOut{}
	for _, tc := range []struct {
		name string
		out  reportsOut
		err  error
		want bool
	}{
		{"a delta refused with 400", delta, fmt.Errorf("127.0.0.1:1: %w", bad), true},
		{"a whole list refused with 400", full, bad, false},
		{"a delta that timed out", delta, context.DeadlineExceeded, false},
		{"a delta refused as another worker's", delta, &cluster.APIError{Status: http.StatusForbidden}, false},
		{"answered", delta, nil, false},
	} {
		if got := deltaRefused(tc.out, tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	var s reportSync
	out := s.prepare([]cluster.ExecutorReport{{ID: "a"}})
	s.answered(out, &cluster.HeartbeatReply{ReportsDigest: out.digest, ReportsDelta: true})
	if next := s.prepare([]cluster.ExecutorReport{{ID: "a", PID: 2}}); next.base == "" {
		t.Fatal("no delta to refuse")
	}
	s.forget()
	if next := s.prepare([]cluster.ExecutorReport{{ID: "a", PID: 2}}); next.base != "" || len(next.executors) != 1 {
		t.Fatalf("after a refused delta: %+v, want the whole list", next)
	}
}
