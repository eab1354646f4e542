package master

import (
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// reportAt: the worker of executor id reports it in state st at time at.
func reportAt(id string, st cluster.ExecutorState, at time.Duration) func(*State) {
	return func(s *State) {
		e := s.executor(id)
		mustApply(s, &command{Op: opStatus, Now: time.Time{}.Add(at), Worker: &cluster.Worker{ID: e.Worker},
			Reports: []cluster.ExecutorReport{{ID: id, State: st, Generation: e.Generation, LastError: "crash loop", CPUs: e.CPUs}}})
	}
}

func wantApp(id string, st cluster.AppState) func(t *testing.T, s *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		if a := s.Apps[id]; a == nil || a.State != st {
			t.Fatalf("app %s = %+v, want %s", id, a, st)
		}
	}
}

func checks(fs ...func(t *testing.T, s *State)) func(t *testing.T, s *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		for _, f := range fs {
			f(t, s)
		}
	}
}

func TestScheduleReschedule(t *testing.T) {
	pol := &cluster.Reschedule{Attempts: 2, Interval: time.Hour, Delay: 5 * time.Second, DelayFunction: cluster.DelayExponential, MaxDelay: time.Minute}
	web := cluster.Process{Instances: 1, Reschedule: pol}
	abc := []string{"a", "b", "c"}
	s := runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a"), register("b"), register("c"), submit("web", web)},
			alive: abc, want: []string{"assign 1.web.0@a[]"}},
		{name: "runs", do: []func(*State){running}, alive: abc, want: []string{}},
		{name: "gives up on a: not FAILED yet, moved off a", do: []func(*State){reportAt("1.web.0", cluster.Failed, 10*time.Second)},
			alive: abc, at: 10 * time.Second, want: []string{"reschedule 1.web.0"},
			check: checks(wantExecutor("1.web.0", "", cluster.Pending), wantApp("1", cluster.AppPending))},
		{name: "waits out the delay (5s)", alive: abc, at: 14 * time.Second, want: []string{}},
		{name: "then placed elsewhere than a", alive: abc, at: 15 * time.Second, want: []string{"assign 1.web.0@b[]"}},
		{name: "runs on b", do: []func(*State){running}, alive: abc, at: 16 * time.Second, want: []string{},
			check: wantApp("1", cluster.AppRunning)},
		{name: "gives up on b", do: []func(*State){reportAt("1.web.0", cluster.Failed, 20*time.Second)},
			alive: abc, at: 20 * time.Second, want: []string{"reschedule 1.web.0"}},
		{name: "the second delay doubles (10s)", alive: abc, at: 29 * time.Second, want: []string{}},
		{name: "placed on c, the one it has not failed on", alive: abc, at: 30 * time.Second, want: []string{"assign 1.web.0@c[]"}},
		{name: "gives up on c: attempts spent, FAILED with its app", do: []func(*State){reportAt("1.web.0", cluster.Failed, 40*time.Second)},
			alive: abc, at: 40 * time.Second, want: []string{},
			check: checks(wantExecutor("1.web.0", "c", cluster.Failed), wantApp("1", cluster.AppFailed))},
	})
	e := s.executor("1.web.0")
	if len(e.Reschedules) != 2 || e.Reschedules[0].From != "a" || e.Reschedules[1].From != "b" ||
		e.Reschedules[1].NotBefore.Sub(e.Reschedules[1].Time) != 10*time.Second || e.Reschedules[0].Reason != "crash loop" {
		t.Fatalf("attempts %+v", e.Reschedules)
	}
}

func TestScheduleRescheduleLimits(t *testing.T) {
	t.Run("one worker: FAILED at once, nowhere else to go", func(t *testing.T) {
		runSchedule(t, []schedStep{
			{name: "placed", do: []func(*State){register("a"), submit("web", cluster.Process{Instances: 1})},
				alive: []string{"a"}, want: []string{"assign 1.web.0@a[]"}},
			{name: "gives up", do: []func(*State){reportAt("1.web.0", cluster.Failed, time.Second)}, alive: []string{"a"}, at: time.Second,
				want: []string{}, check: wantApp("1", cluster.AppFailed)},
		})
	})
	t.Run("attempts = 0: never", func(t *testing.T) {
		runSchedule(t, []schedStep{
			{name: "placed", do: []func(*State){register("a"), register("b"), submit("web", cluster.Process{Instances: 1, Reschedule: &cluster.Reschedule{DelayFunction: "constant"}})},
				alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[]"}},
			{name: "gives up", do: []func(*State){reportAt("1.web.0", cluster.Failed, time.Second)}, alive: []string{"a", "b"}, at: time.Second,
				want: []string{}, check: wantApp("1", cluster.AppFailed)},
		})
	})
	t.Run("the other worker is down: waits for it, with the reason", func(t *testing.T) {
		s := runSchedule(t, []schedStep{
			{name: "placed", do: []func(*State){register("a"), register("b"), submit("web", cluster.Process{Instances: 1})},
				alive: []string{"a"}, want: []string{"assign 1.web.0@a[]"}},
			{name: "gives up", do: []func(*State){reportAt("1.web.0", cluster.Failed, time.Second)}, alive: []string{"a"}, at: time.Second,
				want: []string{"reschedule 1.web.0"}},
			{name: "not back on a", alive: []string{"a"}, at: time.Minute, want: []string{"assign 1.web.0 waits (no worker)"}},
			{name: "b comes back", alive: []string{"a", "b"}, at: time.Minute + time.Second, want: []string{"assign 1.web.0@b[]"}},
		})
		_ = s
	})
	t.Run("attempts older than the interval do not count", func(t *testing.T) {
		pol := &cluster.Reschedule{Attempts: 1, Interval: time.Minute, DelayFunction: "constant"}
		runSchedule(t, []schedStep{
			{name: "placed", do: []func(*State){register("a"), register("b"), register("c"), submit("web", cluster.Process{Instances: 1, Reschedule: pol})},
				alive: []string{"a", "b", "c"}, want: []string{"assign 1.web.0@a[]"}},
			{name: "gives up on a", do: []func(*State){reportAt("1.web.0", cluster.Failed, 0)}, alive: []string{"a", "b", "c"},
				want: []string{"reschedule 1.web.0", "assign 1.web.0@b[]"}},
			{name: "gives up on b two minutes later: the attempt on a has expired", do: []func(*State){reportAt("1.web.0", cluster.Failed, 2*time.Minute)},
				alive: []string{"a", "b", "c"}, at: 2 * time.Minute, want: []string{"reschedule 1.web.0", "assign 1.web.0@c[]"}},
		})
	})
}

func TestRescheduleDelays(t *testing.T) {
	exp := cluster.Reschedule{Delay: 5 * time.Second, DelayFunction: cluster.DelayExponential, MaxDelay: 30 * time.Second}
	con := cluster.Reschedule{Delay: 5 * time.Second, DelayFunction: cluster.DelayConstant}
	for n, want := range []time.Duration{5, 10, 20, 30, 30} {
		if got := exp.DelayOf(n); got != want*time.Second {
			t.Errorf("exponential attempt %d: %v, want %v", n, got, want*time.Second)
		}
		if got := con.DelayOf(n); got != 5*time.Second {
			t.Errorf("constant attempt %d: %v", n, got)
		}
	}
	if err := (cluster.Reschedule{Attempts: 1, DelayFunction: "linear"}).Check(); err == nil || !strings.Contains(err.Error(), "delay-function") {
		t.Fatalf("linear: %v", err)
	}
}
