package master

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

// placed builds a state with app 1 (web x2: one on w1, one on w2) and app
// 2 (killed, one executor still on w1).
func placed(t *testing.T) *State {
	t.Helper()
	s := newState()
	register("w1", 0, 1)(s)
	register("w2", 0, 1)(s)
	submit("web", cluster.Process{Instances: 2, CPUs: 1})(s)
	submit("old", cluster.Process{Instances: 1})(s)
	mustApply(s, &command{Op: opAssign, Assign: []assignment{
		{Executor: "1.web.0", Worker: "w1", WorkerAddr: "w1:1", CPUs: []int{0}},
		{Executor: "1.web.1", Worker: "w2", WorkerAddr: "w2:1", CPUs: []int{0}},
		{Executor: "2.old.0", Worker: "w1", WorkerAddr: "w1:1", CPUs: []int{}},
	}})
	running(s)
	kill("2")(s)
	return s
}

func TestReportChanges(t *testing.T) {
	s := placed(t)
	same := cluster.ExecutorReport{ID: "1.web.0", PID: 100, State: cluster.Running, CPUs: []int{0}}
	cases := []struct {
		name        string
		reports     []cluster.ExecutorReport
		wantReports []string
		wantGone    []string
	}{
		{"nothing changed; the killed app's executor is still stopping", []cluster.ExecutorReport{same, {ID: "2.old.0", PID: 100, State: cluster.Stopping}}, nil, nil},
		{"a new pid", []cluster.ExecutorReport{{ID: "1.web.0", PID: 101, State: cluster.Running}, {ID: "2.old.0", PID: 100, State: cluster.Stopping}}, []string{"1.web.0"}, nil},
		{"the killed app's executor is gone", []cluster.ExecutorReport{same}, nil, []string{"2.old.0"}},
		{"a report of another worker's executor is stale", []cluster.ExecutorReport{same, {ID: "1.web.1", PID: 7, State: cluster.Failed}}, nil, []string{"2.old.0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reports, gone := reportChanges(s, "w1", tc.reports)
			var ids []string
			for _, r := range reports {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, tc.wantReports) || !slices.Equal(gone, tc.wantGone) {
				t.Fatalf("reports %v gone %v, want %v and %v", ids, gone, tc.wantReports, tc.wantGone)
			}
		})
	}
	// An executor of a live app that the worker does not report stays: the
	// worker may be starting it.
	if _, gone := reportChanges(s, "w1", nil); !slices.Equal(gone, []string{"2.old.0"}) {
		t.Fatalf("gone = %v, want only the killed app's executor", gone)
	}
}

func TestAssignmentsFor(t *testing.T) {
	s := placed(t)
	mustApply(s, &command{Op: opRestart, App: "1", Restart: &cluster.RestartRequest{Env: map[string]string{"A": "b"}}})
	got := assignmentsFor(s, "w1")
	if len(got) != 1 || got[0].Executor.ID != "1.web.0" || got[0].Process.Name != "web" || got[0].Bundle.Digest != "sha256:x" || got[0].Env["A"] != "b" {
		t.Fatalf("w1 gets %+v, want 1.web.0 only (app 2 is killed) with its process, bundle and restart env", got)
	}
	if got := assignmentsFor(s, "nobody"); got == nil || len(got) != 0 {
		t.Fatalf("a worker with nothing to run gets %#v, want []", got)
	}
}

// The heartbeat handler finds a worker's executors through the fsm's
// per-worker index: it must give what a scan of every app gives, for
// placed executors, killed apps' and replacements, and follow each
// applied entry.
func TestWorkerIndexMatchesTheScan(t *testing.T) {
	s := placed(t)
	f := &fsm{state: s}
	check := func(when string) {
		t.Helper()
		reps := []cluster.ExecutorReport{{ID: "1.web.0", PID: 5, State: cluster.Running}, {ID: "1.web.1", PID: 6, State: cluster.Running}}
		for _, id := range []string{"w1", "w2", "nobody"} {
			f.readWorker(id, func(st *State, refs []execRef) {
				if got, want := assignmentsOf(id, refs), assignmentsFor(st, id); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: assignments of %s from the index %+v, from a scan %+v", when, id, got, want)
				}
				gr, gg := reportChangesOf(refs, id, reps)
				wr, wg := reportChanges(st, id, reps)
				if !reflect.DeepEqual(gr, wr) || !slices.Equal(gg, wg) {
					t.Fatalf("%s: report changes of %s from the index %v %v, from a scan %v %v", when, id, gr, gg, wr, wg)
				}
			})
		}
	}
	check("placed")
	apply := func(c command) {
		t.Helper()
		b, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if res, ok := f.Apply(&raft.Log{Index: f.stateVersion() + 1, Data: b}).(result); !ok || res.Err != nil {
			t.Fatalf("apply %s: %+v", c.Op, res)
		}
	}
	v := f.stateVersion()
	apply(*submitCmd("more", cluster.Process{Name: "more", Command: []string{"./more"}, Instances: 1}))
	apply(command{Op: opAssign, Assign: []assignment{{Executor: "3.more.0", Worker: "w2", WorkerAddr: "w2:1", CPUs: []int{}}}})
	if f.stateVersion() != v+2 {
		t.Fatalf("state version %d after two entries from %d", f.stateVersion(), v)
	}
	check("after a new placement on w2")
	f.readWorker("w2", func(_ *State, refs []execRef) {
		if len(refs) != 2 {
			t.Fatalf("w2's executors after a new placement: %d, want 2 (the index was not rebuilt)", len(refs))
		}
	})
	// A replacement on w2 for w1's executor: w2 lists it too.
	f.mu.Lock()
	s.executor("1.web.0").Replacement = &cluster.Executor{ID: "1.web.0", App: "1", Process: "web", Worker: "w2", State: cluster.Starting}
	f.version++
	f.mu.Unlock()
	check("with a replacement on w2")
}

// A worker that sends the digest of the assignments it holds gets them
// only when they changed; one that sends none always gets them.
func TestHeartbeatAssignmentsDigest(t *testing.T) {
	f := &fsm{state: placed(t)}
	m := &Master{fsm: f}
	reply := func(have string) cluster.HeartbeatReply {
		var r cluster.HeartbeatReply
		m.fillAssignments(&r, "w1", have)
		return r
	}
	old := reply("")
	if old.AssignmentsDigest != "" || old.AssignmentsUnchanged || len(old.Assignments) != 1 {
		t.Fatalf("a worker without digests got %+v, want the list only", old)
	}
	first := reply("-")
	if first.AssignmentsDigest == "" || first.AssignmentsUnchanged || len(first.Assignments) != 1 {
		t.Fatalf("first heartbeat: %+v, want the list and its digest", first)
	}
	again := reply(first.AssignmentsDigest)
	if !again.AssignmentsUnchanged || again.Assignments != nil || again.AssignmentsDigest != first.AssignmentsDigest {
		t.Fatalf("unchanged assignments: %+v, want unchanged with the same digest and no list", again)
	}
	// A restart bumps the generation: the list comes again, with a new digest.
	f.mu.Lock()
	mustApply(f.state, &command{Op: opRestart, App: "1", Restart: &cluster.RestartRequest{Env: map[string]string{"A": "b"}}})
	f.version++
	f.mu.Unlock()
	changed := reply(first.AssignmentsDigest)
	if changed.AssignmentsUnchanged || len(changed.Assignments) != 1 || changed.AssignmentsDigest == first.AssignmentsDigest || changed.Assignments[0].Env["A"] != "b" {
		t.Fatalf("after a restart: %+v, want the new list with a new digest", changed)
	}
	if r := reply(changed.AssignmentsDigest); !r.AssignmentsUnchanged {
		t.Fatalf("the new digest is not recognised: %+v", r)
	}
}

// A status report changes what the worker reported, not what it is
// assigned: the digest stays, and the reply says unchanged.
func TestAssignmentsDigestIgnoresReports(t *testing.T) {
	f := &fsm{state: placed(t)}
	m := &Master{fsm: f}
	var first cluster.HeartbeatReply
	m.fillAssignments(&first, "w1", "-")
	if len(first.Assignments) != 1 || first.Assignments[0].Executor.PID != 0 || first.Assignments[0].Executor.State != "" {
		t.Fatalf("slim assignments still carry the reported pid and state: %+v", first.Assignments)
	}
	f.mu.Lock()
	mustApply(f.state, &command{Op: opStatus, Worker: &cluster.Worker{ID: "w1"}, Reports: []cluster.ExecutorReport{
		{ID: "1.web.0", PID: 4242, State: cluster.Running, CPUs: []int{0}, LogTail: []string{"hello"}}}})
	f.version++
	f.mu.Unlock()
	if e := f.state.executor("1.web.0"); e.PID != 4242 {
		t.Fatalf("the report was not applied: %+v", e)
	}
	var again cluster.HeartbeatReply
	m.fillAssignments(&again, "w1", first.AssignmentsDigest)
	if !again.AssignmentsUnchanged {
		t.Fatalf("a status report changed the assignments' digest: %+v", again)
	}
}

func TestStatusInFlightOncePerWorker(t *testing.T) {
	var f inFlight
	if !f.begin("w1") || f.begin("w1") {
		t.Fatal("a second status entry of w1 may start while the first is in flight")
	}
	if !f.begin("w2") {
		t.Fatal("w1's entry in flight holds up w2's")
	}
	f.end("w1")
	if !f.begin("w1") {
		t.Fatal("w1 cannot replicate again after its entry ended")
	}
}

func reportIDs(rs []cluster.ExecutorReport) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID+"="+strconv.Itoa(r.PID))
	}
	return ids
}

// A worker sends its whole list, then only the reports that changed since
// the list the leader acknowledged: the leader rebuilds the whole list
// from the one it holds. A leader that does not hold the base (a new
// one) reads no reports from such a heartbeat: never the partial list as
// the whole.
func TestReportsDelta(t *testing.T) {
	var c reportCache
	rep := func(id string, pid int) cluster.ExecutorReport {
		return cluster.ExecutorReport{ID: id, PID: pid, State: cluster.Running}
	}
	hb := func(base string, removed []string, reps ...cluster.ExecutorReport) *cluster.Heartbeat {
		return &cluster.Heartbeat{Worker: cluster.Worker{ID: "w1"}, Executors: reps, ReportsBase: base, Removed: removed}
	}
	resolve := func(h *cluster.Heartbeat, header string, wantHeld bool, want ...string) {
		t.Helper()
		d, held, err := c.resolve(h, header)
		if err != nil || held != wantHeld || !slices.Equal(reportIDs(h.Executors), want) {
			t.Fatalf("resolve(%s, base %q): %v %v %v, want held %v with %v", header, h.ReportsBase, reportIDs(h.Executors), held, err, wantHeld, want)
		}
		if held && d != "" {
			c.put("w1", strings.TrimPrefix(d, "same:"), h.Executors)
		}
	}
	resolve(hb("", nil, rep("a", 1), rep("b", 2), rep("c", 3)), "d1", true, "a=1", "b=2", "c=3")
	resolve(hb("", nil), "same:d1", true, "a=1", "b=2", "c=3")
	// b got a new pid, c is gone, d is new.
	resolve(hb("d1", []string{"c"}, rep("d", 4), rep("b", 5)), "d2", true, "a=1", "b=5", "d=4")
	resolve(hb("", nil), "same:d2", true, "a=1", "b=5", "d=4")
	// The answer to d2 was lost: the worker still sends against d1, which
	// the leader keeps beside the newest.
	resolve(hb("d1", []string{"c"}, rep("d", 4), rep("b", 6)), "d3", true, "a=1", "b=6", "d=4")
	resolve(hb("d3", nil, rep("a", 7)), "d4", true, "a=7", "b=6", "d=4")
	// Two lists on, d1 is gone: the leader says it does not hold it.
	resolve(hb("d1", nil, rep("a", 8)), "d5", false)
	// A new leader holds nothing.
	c = reportCache{}
	resolve(hb("d4", nil, rep("a", 9)), "d6", false)
	resolve(hb("", nil), "same:d4", false)
	// A delta must name the digest of the list it makes.
	if _, _, err := c.resolve(hb("d4", nil, rep("a", 9)), ""); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a delta without its digest: %v, want ErrBadRequest", err)
	}
	// The cached lists are not changed by a delta applied onto them.
	c.put("w1", "e1", []cluster.ExecutorReport{rep("a", 1), rep("b", 2)})
	resolve(hb("e1", []string{"a"}, rep("b", 3)), "e2", true, "b=3")
	if got, _ := c.get("w1", "e1"); !slices.Equal(reportIDs(got), []string{"a=1", "b=2"}) {
		t.Fatalf("the base list changed under a delta: %v", reportIDs(got))
	}
}

// A master older than report deltas decodes heartbeats strictly: it
// refuses a delta (400) instead of reading its partial list as every
// executor the worker runs, and the worker then sends the whole list.
func TestOlderMasterRefusesReportsDelta(t *testing.T) {
	type olderHeartbeat struct { // cluster.Heartbeat before report deltas
		Worker    cluster.Worker           `json:"worker"`
		Secret    string                   `json:"secret"`
		Executors []cluster.ExecutorReport `json:"executors"`
	}
	for _, hb := range []cluster.Heartbeat{
		{Worker: cluster.Worker{ID: "w1"}, Secret: "s", ReportsBase: "d1"},
		{Worker: cluster.Worker{ID: "w1"}, Secret: "s", ReportsBase: "d1", Removed: []string{"1.web.0"},
			Executors: []cluster.ExecutorReport{{ID: "1.web.1", State: cluster.Running}}},
	} {
		b, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		var old olderHeartbeat
		err = decodeBody(httptest.NewRequest("POST", "/api/v1/workers/heartbeat", bytes.NewReader(b)), &old)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "reports_base") {
			t.Fatalf("an older master decoding %s: %v, want a 400 naming reports_base", b, err)
		}
	}
	// A whole list still decodes there.
	b, _ := json.Marshal(cluster.Heartbeat{Worker: cluster.Worker{ID: "w1"}, Secret: "s", Executors: []cluster.ExecutorReport{{ID: "1.web.0"}}})
	var old olderHeartbeat
	if err := decodeBody(httptest.NewRequest("POST", "/api/v1/workers/heartbeat", bytes.NewReader(b)), &old); err != nil {
		t.Fatalf("a whole list at an older master: %v", err)
	}
}
