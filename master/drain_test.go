package master

import (
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func drain(worker string, deadline time.Duration, at time.Duration) func(*State) {
	return func(s *State) {
		mustApply(s, &command{Op: opDrain, Now: time.Time{}.Add(at), Drain: &drainCmd{Worker: worker, Draining: true, Deadline: deadline}})
	}
}

func undrain(worker string) func(*State) {
	return func(s *State) { mustApply(s, &command{Op: opDrain, Drain: &drainCmd{Worker: worker}}) }
}

// onlyReplacementsStarting: the replacements' workers report them STARTING
// (not ready), the rest RUNNING.
func replacementsStarting(s *State) {
	for _, id := range sortedAppIDs(s) {
		for _, e := range s.Apps[id].Executors {
			if r := e.Replacement; r != nil {
				mustApply(s, &command{Op: opStatus, Worker: &cluster.Worker{ID: r.Worker},
					Reports: []cluster.ExecutorReport{{ID: e.ID, PID: 200, State: cluster.Starting, Generation: r.Generation}}})
			}
		}
	}
}

func wantReplacement(id, worker string) func(t *testing.T, s *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		e := s.executor(id)
		switch {
		case worker == "" && e.Replacement != nil:
			t.Fatalf("executor %s has a replacement on %s, want none", id, e.Replacement.Worker)
		case worker != "" && (e.Replacement == nil || e.Replacement.Worker != worker):
			t.Fatalf("executor %s replacement %+v, want on %s", id, e.Replacement, worker)
		}
	}
}

func TestScheduleDrain(t *testing.T) {
	web := cluster.Process{Instances: 2, CPUs: 1}
	abc := []string{"a", "b", "c"}
	s := runSchedule(t, []schedStep{
		{name: "placed on a and b", do: []func(*State){register("a", 0, 1), register("b", 0, 1), submit("web", web)},
			alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}},
		{name: "runs", do: []func(*State){running}, alive: []string{"a", "b"}, want: []string{}},
		{name: "drain a, c joins: the replacement starts on c, the old one stays", do: []func(*State){register("c", 0, 1), drain("a", time.Minute, 0)},
			alive: abc, want: []string{"assign 1.web.0@c[0](replacement)"},
			check: checks(wantExecutor("1.web.0", "a", cluster.Running), wantReplacement("1.web.0", "c"), wantApp("1", cluster.AppRunning))},
		{name: "nothing new goes to a: scale up lands on b and c", do: []func(*State){replacementsStarting,
			func(s *State) {
				mustApply(s, &command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Instances: 3}})
			}},
			alive: abc, at: time.Second, want: []string{"assign 1.web.2@b[1]"}},
		{name: "the replacement is not ready: no move", do: []func(*State){replacementsStarting}, alive: abc, at: 2 * time.Second, want: []string{}},
		{name: "ready: the executor moves to c, a stops the old copy", do: []func(*State){running}, alive: abc, at: 3 * time.Second,
			want:  []string{"promote 1.web.0"},
			check: checks(wantExecutor("1.web.0", "c", cluster.Running), wantReplacement("1.web.0", ""), wantApp("1", cluster.AppRunning))},
	})
	if got := assignmentsFor(s, "a"); len(got) != 0 {
		t.Fatalf("a is still assigned %+v", got)
	}
}

func TestScheduleDrainDeadline(t *testing.T) {
	web := cluster.Process{Instances: 2, CPUs: 2}
	s := runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a", 0, 1), register("b", 0, 1), submit("web", web)},
			alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0 1] 1.web.1@b[0 1]"}},
		{name: "runs", do: []func(*State){running}, alive: []string{"a", "b"}, want: []string{}},
		{name: "drain a: no room elsewhere, so it keeps running", do: []func(*State){drain("a", time.Minute, 0)},
			alive: []string{"a", "b"}, at: time.Second, want: []string{},
			check: checks(wantExecutor("1.web.0", "a", cluster.Running), wantReplacement("1.web.0", ""))},
		{name: "eligible again, drain again", do: []func(*State){undrain("a"), drain("a", time.Minute, 2*time.Second)},
			alive: []string{"a", "b"}, at: 2 * time.Second, want: []string{}},
		{name: "past the deadline it is stopped and waits for room", alive: []string{"a", "b"}, at: 62 * time.Second,
			want:  []string{"evict 1.web.0", "assign 1.web.0 waits (no room)"},
			check: checks(wantExecutor("1.web.0", "", cluster.Pending), wantApp("1", cluster.AppPending))},
		{name: "eligible: placed on a again", do: []func(*State){undrain("a")}, alive: []string{"a", "b"}, at: 63 * time.Second,
			want: []string{"assign 1.web.0@a[0 1]"}},
	})
	_ = s
}

func TestDrainSurvivesReregistration(t *testing.T) {
	s := newState()
	register("a", 0)(s)
	drain("a", time.Minute, 0)(s)
	register("a", 0)(s)
	if w := s.Workers["a"]; !w.Draining || w.DrainDeadline.IsZero() {
		t.Fatalf("after re-registering: %+v", w)
	}
	if r := s.apply(&command{Op: opDrain, Drain: &drainCmd{Worker: "nope", Draining: true}}); r.Err == nil {
		t.Fatal("drain of an unknown worker accepted")
	}
}

// The replacement's worker reports it; the heartbeat handler passes that
// report on (reportChanges), and it lands on the replacement only.
func TestReplacementReports(t *testing.T) {
	s := runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a", 0), register("b", 0), submit("web", cluster.Process{Instances: 1, CPUs: 1})},
			alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0]"}},
		{name: "drain a", do: []func(*State){running, drain("a", time.Minute, 0)}, alive: []string{"a", "b"}, want: []string{"assign 1.web.0@b[0](replacement)"}},
	})
	rep := cluster.ExecutorReport{ID: "1.web.0", PID: 7, State: cluster.Running, CPUs: []int{0}}
	reports, _ := reportChanges(s, "b", []cluster.ExecutorReport{rep})
	if len(reports) != 1 {
		t.Fatalf("reports from b: %+v", reports)
	}
	mustApply(s, &command{Op: opStatus, Worker: &cluster.Worker{ID: "b"}, Reports: reports})
	if e := s.executor("1.web.0"); e.Worker != "a" || e.PID != 100 || e.Replacement.PID != 7 || !ready(s.Apps["1"], *e.Replacement) {
		t.Fatalf("after b's report: %+v, replacement %+v", e, e.Replacement)
	}
	if reports, _ := reportChanges(s, "b", []cluster.ExecutorReport{rep}); len(reports) != 0 {
		t.Fatalf("an unchanged report is passed on again: %+v", reports)
	}
}

// A replacement whose worker dies is dropped and placed again elsewhere.
func TestScheduleDrainReplacementLost(t *testing.T) {
	p := cluster.Process{Instances: 1, CPUs: 1}
	runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a", 0), register("b", 0), register("c", 0), submit("web", p)},
			alive: []string{"a", "b", "c"}, want: []string{"assign 1.web.0@a[0]"}},
		{name: "drain a: replacement on b", do: []func(*State){running, drain("a", time.Minute, 0)},
			alive: []string{"a", "b", "c"}, want: []string{"assign 1.web.0@b[0](replacement)"}},
		{name: "b dies: the replacement goes to c", alive: []string{"a", "c"}, at: time.Second,
			want:  []string{"unreplace 1.web.0", "assign 1.web.0@c[0](replacement)"},
			check: checks(wantExecutor("1.web.0", "a", cluster.Running), wantReplacement("1.web.0", "c"))},
	})
}
