package master

import (
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// servingState is one app with two executors of a group with a health
// check, both running generation 1, the app at generation 2 (restarting).
func servingState(health *cluster.Health) *State {
	s := newState()
	s.Workers["w1"] = &cluster.Worker{ID: "w1", Addr: "127.0.0.1:1", CPUs: []int{0}}
	app := &cluster.App{ID: "1", Name: "web", State: cluster.AppRunning, Generation: 2,
		Processes: []cluster.Process{{Name: "web", Command: []string{"./web"}, Instances: 2, Listen: []int{8080}, Health: health}}}
	for i, id := range []string{"1.web.0", "1.web.1"} {
		app.Executors = append(app.Executors, cluster.Executor{ID: id, App: "1", Process: "web", Index: i, Worker: "w1",
			State: cluster.Running, Generation: 1, Observed: 1, Health: cluster.HealthPassing})
	}
	s.Apps["1"] = app
	return s
}

// TestRollingRestartWaitsForHealth: with a health check the rolling
// restart moves to the next executor only once the restarted one passes;
// without one, once it runs.
func TestRollingRestartWaitsForHealth(t *testing.T) {
	s := servingState(&cluster.Health{HTTP: "/health"})
	if got := rollingRestarts(s); len(got) != 1 || got[0] != "1.web.0" {
		t.Fatalf("first step: %v, want [1.web.0]", got)
	}
	e := &s.Apps["1"].Executors[0]
	e.Generation, e.Observed, e.Health = 2, 2, cluster.HealthUnknown // restarted, running, not checked yet
	if got := rollingRestarts(s); len(got) != 0 {
		t.Fatalf("moved on from an instance whose health is unknown: %v", got)
	}
	e.Health = cluster.HealthFailing
	if got := rollingRestarts(s); len(got) != 0 {
		t.Fatalf("moved on from a failing instance: %v", got)
	}
	e.Health = cluster.HealthPassing
	if got := rollingRestarts(s); len(got) != 1 || got[0] != "1.web.1" {
		t.Fatalf("after the restarted instance passed: %v, want [1.web.1]", got)
	}

	s = servingState(nil)
	e = &s.Apps["1"].Executors[0]
	e.Generation, e.Observed, e.Health = 2, 2, cluster.HealthUnknown
	if got := rollingRestarts(s); len(got) != 1 || got[0] != "1.web.1" {
		t.Fatalf("without a check: %v, want [1.web.1] once running", got)
	}
}

// TestDisableReachesAssignmentsAndEvents: app disable is a replicated flag
// that the workers see in their assignments; health changes reported by
// a worker become events.
func TestDisableReachesAssignmentsAndEvents(t *testing.T) {
	s := servingState(&cluster.Health{TCP: true})
	yes := true
	c := &command{Op: opDisable, App: "1", Disable: &yes, Now: time.Now()}
	before := s.observe(c)
	r := s.apply(c)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if evs := s.events(c, before, r); len(evs) != 1 || evs[0].Type != "disable" {
		t.Fatalf("disable events: %+v", evs)
	}
	for _, a := range assignmentsFor(s, "w1") {
		if !a.Disabled {
			t.Fatalf("assignment %s not disabled", a.Executor.ID)
		}
	}
	if r := s.apply(&command{Op: opDisable, App: "nope", Disable: &yes}); r.Err == nil {
		t.Fatal("disabling an unknown app succeeded")
	}
	no := false
	s.apply(&command{Op: opDisable, App: "1", Disable: &no})
	if assignmentsFor(s, "w1")[0].Disabled {
		t.Fatal("still disabled after enable")
	}

	c = &command{Op: opStatus, Worker: &cluster.Worker{ID: "w1"}, Now: time.Now(), Reports: []cluster.ExecutorReport{
		{ID: "1.web.0", State: cluster.Running, Generation: 1, Health: cluster.HealthFailing, CPUs: []int{}}}}
	before = s.observe(c)
	r = s.apply(c)
	evs := s.events(c, before, r)
	if len(evs) != 1 || evs[0].Type != "health" || evs[0].State != "failing" || evs[0].Executor != "1.web.0" {
		t.Fatalf("health events: %+v", evs)
	}
	if s.Apps["1"].Executors[0].Health != cluster.HealthFailing {
		t.Fatal("the reported health was not replicated")
	}
}

// TestPlacementPorts: instances of a group with listen = [8080] share a
// worker; a group with ports = [8080] (bound by the program) gets one
// instance per worker; another app never lands on a worker where its
// listen port is taken.
func TestPlacementPorts(t *testing.T) {
	s := newState()
	s.Workers["w1"] = &cluster.Worker{ID: "w1", Addr: "127.0.0.1:1", CPUs: []int{0, 1, 2, 3}}
	view := viewOf(alive("w1"), eligible("w1"))
	add := func(id string, p cluster.Process) {
		app := &cluster.App{ID: id, Name: "a" + id, State: cluster.AppPending, Processes: []cluster.Process{p}}
		for i := range p.Instances {
			app.Executors = append(app.Executors, cluster.Executor{ID: id + "." + p.Name + "." + string(rune('0'+i)), App: id, Process: p.Name, Index: i, State: cluster.Pending})
		}
		s.Apps[id] = app
	}
	add("1", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 3, Listen: []int{8080}})
	add("2", cluster.Process{Name: "api", Command: []string{"x"}, Instances: 2, Ports: []int{9090}})
	add("3", cluster.Process{Name: "other", Command: []string{"x"}, Instances: 1, Listen: []int{8080}})
	placed := map[string]bool{}
	for _, a := range place(s, view) {
		if a.Worker != "" {
			placed[a.Executor] = true
		}
	}
	for id, want := range map[string]bool{"1.web.0": true, "1.web.1": true, "1.web.2": true, "2.api.0": true, "2.api.1": false, "3.other.0": false} {
		if placed[id] != want {
			t.Errorf("%s placed=%v, want %v (all placements: %v)", id, placed[id], want, placed)
		}
	}
}
