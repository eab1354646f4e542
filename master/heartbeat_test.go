package master

import (
	"slices"
	"testing"

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
