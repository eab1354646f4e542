package master

import (
	"errors"
	"slices"
	"testing"

	"github.com/gear-run/gear/pkg/cluster"
)

func submitCmd(name string, procs ...cluster.Process) *command {
	return &command{Op: opSubmit, Submit: &cluster.SubmitRequest{Name: name, Processes: procs, Bundle: cluster.Bundle{Digest: "sha256:x"}}}
}

func TestApplySubmitKillScale(t *testing.T) {
	s := newState()
	r := s.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 2}))
	if r.Err != nil || r.ID != "1" {
		t.Fatalf("submit: %+v", r)
	}
	app := s.Apps["1"]
	if len(app.Executors) != 2 || app.Executors[1].ID != "1.web.1" || app.State != cluster.AppPending {
		t.Fatalf("executors after submit: %+v", app.Executors)
	}
	if r := s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Instances: 4}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if len(app.Executors) != 4 {
		t.Fatalf("scale up: %d executors", len(app.Executors))
	}
	s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Instances: 1}})
	if len(app.Executors) != 1 || app.Executors[0].ID != "1.web.0" {
		t.Fatalf("scale down kept %+v", app.Executors)
	}
	if r := s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Process: "nope", Instances: 1}}); !errors.Is(r.Err, ErrBadRequest) {
		t.Fatalf("scale of an unknown group: %v", r.Err)
	}
	if r := s.apply(&command{Op: opKill, App: "2"}); !errors.Is(r.Err, ErrNoSuchApp) {
		t.Fatalf("kill of an unknown app: %v", r.Err)
	}
	s.apply(&command{Op: opKill, App: "1"})
	if app.State != cluster.AppKilled || app.Executors[0].State != cluster.Stopped {
		t.Fatalf("after kill: %s / %s", app.State, app.Executors[0].State)
	}
	if r := s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Instances: 3}}); !errors.Is(r.Err, ErrBadRequest) {
		t.Fatalf("scale of a killed app: %v", r.Err)
	}
	if r := s.apply(submitCmd("again", cluster.Process{Name: "p", Command: []string{"x"}, Instances: 0})); r.ID != "2" {
		t.Fatalf("ids must keep counting: %q", r.ID)
	}
	if s.Apps["2"].Executors == nil {
		t.Fatal("an app without executors must list [] (JSON contract), not null")
	}
}

func TestApplyAssignStatusUnassign(t *testing.T) {
	s := newState()
	s.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1}))
	s.apply(&command{Op: opAssign, Assign: []assignment{{Executor: "1.web.0", Worker: "w1", WorkerAddr: "h:1", CPUs: []int{3}}}})
	e := &s.Apps["1"].Executors[0]
	if e.Worker != "w1" || e.State != cluster.Starting || !slices.Equal(e.CPUs, []int{3}) {
		t.Fatalf("after assign: %+v", e)
	}
	// A report from another worker is stale and ignored.
	s.apply(&command{Op: opStatus, Worker: &cluster.Worker{ID: "w2"}, Reports: []cluster.ExecutorReport{{ID: "1.web.0", PID: 99, State: cluster.Running}}})
	if e.PID != 0 {
		t.Fatalf("a stale report was applied: %+v", e)
	}
	s.apply(&command{Op: opStatus, Worker: &cluster.Worker{ID: "w1"}, Reports: []cluster.ExecutorReport{{ID: "1.web.0", PID: 42, State: cluster.Running, Restarts: 2, Crashes: 2}}})
	if e.PID != 42 || e.Restarts != 2 || e.Crashes != 2 || s.Apps["1"].State != cluster.AppRunning {
		t.Fatalf("after report: %+v, app %s", e, s.Apps["1"].State)
	}
	s.apply(&command{Op: opUnassign, Lost: []string{"1.web.0"}})
	if e.Worker != "" || e.State != cluster.Lost || e.Restarts != 2 || e.Crashes != 2 || e.CPUs == nil {
		t.Fatalf("after unassign (restart and crash-loop counts must survive): %+v", e)
	}
}

func TestPlaceExclusiveCores(t *testing.T) {
	s := newState()
	s.Workers["a"] = &cluster.Worker{ID: "a", Addr: "a:1", CPUs: []int{0, 1}}
	s.Workers["b"] = &cluster.Worker{ID: "b", Addr: "b:1", CPUs: []int{0, 1, 2}}
	s.Workers["dead"] = &cluster.Worker{ID: "dead", Addr: "d:1", CPUs: []int{0, 1, 2, 3, 4, 5}}
	view := viewOf(alive("a", "b"), eligible("a", "b", "dead"))
	s.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 3, CPUs: 2}))

	as := place(s, view)
	used := map[string][]int{}
	placed := 0
	for _, a := range as {
		if a.Error != "" {
			continue
		}
		placed++
		if a.Worker == "dead" {
			t.Fatal("placed on a worker that is not alive")
		}
		for _, c := range a.CPUs {
			if slices.Contains(used[a.Worker], c) {
				t.Fatalf("core %d of %s given twice: %+v", c, a.Worker, as)
			}
			used[a.Worker] = append(used[a.Worker], c)
		}
		if len(a.CPUs) != 2 {
			t.Fatalf("want 2 cores, got %v", a.CPUs)
		}
	}
	// 5 free cores in pairs: 2 executors fit, the third must wait with a reason.
	if placed != 2 || len(as) != 3 || as[2].Error == "" {
		t.Fatalf("want 2 placed and 1 waiting with a reason, got %+v", as)
	}
}

func TestPlaceSpreadsUnpinnedExecutors(t *testing.T) {
	s := newState()
	s.Workers["a"] = &cluster.Worker{ID: "a", Addr: "a:1", CPUs: []int{0, 1, 2, 3}}
	s.Workers["b"] = &cluster.Worker{ID: "b", Addr: "b:1", CPUs: []int{0}}
	s.apply(submitCmd("chat", cluster.Process{Name: "chat", Command: []string{"x"}, Instances: 4}))
	per := map[string]int{}
	for _, a := range place(s, viewOf(alive("a", "b"), eligible("a", "b"))) {
		per[a.Worker]++
	}
	if per["a"] != 2 || per["b"] != 2 {
		t.Fatalf("unpinned executors should spread evenly, got %v", per)
	}
}

// The reconciler works on a clone while apply goes on: nothing apply does
// may show through.
func TestCloneIsNotChangedByLaterApplies(t *testing.T) {
	s := newState()
	s.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 2}))
	s.Workers["w1"] = &cluster.Worker{ID: "w1", CPUs: []int{0, 1}}
	c := s.clone()
	s.apply(&command{Op: opAssign, Assign: []assignment{{Executor: "1.web.0", Worker: "w1", CPUs: []int{1}}}})
	s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Instances: 5}})
	s.apply(&command{Op: opRestart, App: "1", Restart: &cluster.RestartRequest{}})
	s.apply(&command{Op: opWorker, Worker: &cluster.Worker{ID: "w1", CPUs: []int{0}}})
	s.apply(&command{Op: opKill, App: "1"})
	a := c.Apps["1"]
	if a.Executors[0].Worker != "" || len(a.Executors) != 2 || a.Processes[0].Instances != 2 || a.Generation != 0 ||
		a.State != cluster.AppPending || len(c.Workers["w1"].CPUs) != 2 {
		t.Fatalf("the clone changed with the state: %+v %+v", a, c.Workers["w1"])
	}
}

// A submit retried after its answer was lost (the leader applied it, then
// the forwarding connection or the leadership went, and the client asked
// another master) creates one app, not two: the retry carries the first
// attempt's request id and gets its app. Found by the fault suite (seed 8:
// a read listed one submitted name twice).
func TestSubmitRetryAppliedOnce(t *testing.T) {
	s := newState()
	p := cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1}
	first := submitCmd("web", p)
	first.Submit.RequestID = "req-1"
	retry := submitCmd("web", p)
	retry.Submit.RequestID = "req-1"
	r1, r2 := s.apply(first), s.apply(retry)
	if r1.Err != nil || r2.Err != nil || r1.ID != r2.ID {
		t.Fatalf("submit and its retry: %+v, %+v; want one app", r1, r2)
	}
	if len(s.Apps) != 1 {
		t.Fatalf("a retried submit made %d apps", len(s.Apps))
	}
	other := submitCmd("web", p)
	other.Submit.RequestID = "req-2"
	if r := s.apply(other); r.ID == r1.ID || len(s.Apps) != 2 {
		t.Fatalf("a new request id must make a new app: %+v, %d apps", r, len(s.Apps))
	}
}
