package master

import (
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func update(app, digest string, p cluster.Process) func(*State) {
	return func(s *State) {
		req := submitCmd("web", p).Submit
		req.Bundle = cluster.Bundle{Digest: digest}
		mustApply(s, &command{Op: opUpdate, App: app, Submit: req})
	}
}

func wantVersion(id string, version int) func(t *testing.T, s *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		if e := s.executor(id); e == nil || e.Version != version {
			t.Fatalf("executor %s = %+v, want version %d", id, e, version)
		}
	}
}

// crashing: the worker of executor id reports it in BACKOFF after crashes.
func crashing(id string, crashes int) func(*State) {
	return func(s *State) {
		e := s.executor(id)
		mustApply(s, &command{Op: opStatus, Worker: &cluster.Worker{ID: e.Worker},
			Reports: []cluster.ExecutorReport{{ID: id, State: cluster.Backoff, Crashes: crashes, Generation: e.Generation, LastExit: "exit status 3", CPUs: e.CPUs}}})
	}
}

func TestScheduleUpdate(t *testing.T) {
	web := cluster.Process{Name: "web", Instances: 2, CPUs: 1}
	ab := []string{"a", "b"}
	s := runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a", 0), register("b", 0), submit("web", web)},
			alive: ab, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}, check: wantVersion("1.web.0", 1)},
		{name: "update: the first executor moves to version 2", do: []func(*State){running, update("1", "sha256:v2", web)},
			alive: ab, want: []string{"bump 1.web.0"}, check: checks(wantVersion("1.web.0", 2), wantVersion("1.web.1", 1))},
		{name: "the second waits while the first is not ready", do: []func(*State){report("1.web.0", cluster.Starting)}, alive: ab, want: []string{}},
		{name: "then moves", do: []func(*State){running}, alive: ab, want: []string{"bump 1.web.1"}, check: wantVersion("1.web.1", 2)},
		{name: "done", do: []func(*State){running}, alive: ab, want: []string{}},
	})
	if as := assignmentsFor(s, "a"); len(as) != 1 || as[0].Bundle.Digest != "sha256:v2" {
		t.Fatalf("a's assignment %+v, want the new bundle", as)
	}
	if a := s.Apps["1"]; a.Version != 2 || len(a.Versions) != 2 || a.Versions[0].Bundle.Digest != "sha256:x" && a.Versions[0].Bundle.Digest == "" {
		t.Fatalf("app versions %+v", a.Versions)
	}
}

func TestScheduleUpdateRollsBackAFailingVersion(t *testing.T) {
	web := cluster.Process{Name: "web", Instances: 2, CPUs: 1}
	ab := []string{"a", "b"}
	s := runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a", 0), register("b", 0), submit("web", web)},
			alive: ab, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}},
		{name: "update", do: []func(*State){running, update("1", "sha256:bad", web)}, alive: ab, want: []string{"bump 1.web.0"}},
		{name: "the new instance crash-loops: rolled back, it goes back first", do: []func(*State){crashing("1.web.0", 2)}, alive: ab, at: time.Second,
			want:  []string{"rollback 1", "bump 1.web.0"},
			check: checks(wantVersion("1.web.0", 1), wantVersion("1.web.1", 1))},
		{name: "the other one restarts at the new generation", do: []func(*State){running}, alive: ab, want: []string{"bump 1.web.1"}},
		{name: "settles on version 1", do: []func(*State){running}, alive: ab, want: []string{}},
	})
	a := s.Apps["1"]
	if a.Version != 1 || a.Versions[1].RolledBack.IsZero() || !strings.Contains(a.Versions[1].Reason, "executor 1.web.0 of version 2 failed on worker a: exit status 3") {
		t.Fatalf("app at version %d, versions %+v", a.Version, a.Versions)
	}
	if as := assignmentsFor(s, "a"); as[0].Bundle.Digest == "sha256:bad" {
		t.Fatalf("a still runs the bad bundle")
	}
	// A manual rollback to a version, and forward again.
	mustApply(s, &command{Op: opRollback, App: "1", Rollback: &rollbackCmd{Version: 2}})
	if a.Version != 2 {
		t.Fatalf("rollback to 2: at %d", a.Version)
	}
	for _, bad := range []int{2, 9} {
		if r := s.apply(&command{Op: opRollback, App: "1", Rollback: &rollbackCmd{Version: bad}}); r.Err == nil {
			t.Fatalf("rollback to %d accepted", bad)
		}
	}
	if r := s.apply(&command{Op: opUpdate, App: "1", Submit: &cluster.SubmitRequest{Processes: []cluster.Process{{Name: "other"}}}}); r.Err == nil || !strings.Contains(r.Err.Error(), "process groups") {
		t.Fatalf("an update with other groups: %v", r.Err)
	}
}

// A rollback goes back one version, not two: the executor moved back from
// the failing version still holds that version's failure report until its
// worker reports the new generation, and that report is not a failure of
// the version it was moved back to (CI saw 3 -> 2 -> 1).
func TestScheduleRollbackStopsAtTheGoodVersion(t *testing.T) {
	web := cluster.Process{Name: "web", Instances: 2, CPUs: 1}
	ab := []string{"a", "b"}
	s := runSchedule(t, []schedStep{
		{name: "placed", do: []func(*State){register("a", 0), register("b", 0), submit("web", web)},
			alive: ab, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}},
		{name: "update to 2", do: []func(*State){running, update("1", "sha256:v2", web)}, alive: ab, want: []string{"bump 1.web.0"}},
		{name: "2 rolls on", do: []func(*State){running}, alive: ab, want: []string{"bump 1.web.1"}},
		{name: "2 settled", do: []func(*State){running}, alive: ab, want: []string{}},
		{name: "update to 3", do: []func(*State){update("1", "sha256:bad", web)}, alive: ab, want: []string{"bump 1.web.0"}},
		{name: "3 crash-loops: back to 2", do: []func(*State){crashing("1.web.0", 2)}, alive: ab, at: time.Second,
			want: []string{"rollback 1", "bump 1.web.0"}, check: checks(wantVersion("1.web.0", 2), wantVersion("1.web.1", 2))},
		{name: "the old report of 3 does not roll 2 back", alive: ab, at: 2 * time.Second, want: []string{}},
		{name: "2 settles", do: []func(*State){running}, alive: ab, want: []string{"bump 1.web.1"}},
		{name: "done", do: []func(*State){running}, alive: ab, want: []string{}},
	})
	a := s.Apps["1"]
	if a.Version != 2 || !a.Versions[1].RolledBack.IsZero() || a.Versions[2].RolledBack.IsZero() {
		t.Fatalf("app at version %d, versions %+v: want 2, with only 3 rolled back", a.Version, a.Versions)
	}
}

// An instance of the new version counts as failing when it gave up, crash
// loops, or fails its health check; a running or merely unchecked one
// does not.
func TestFailing(t *testing.T) {
	for _, tc := range []struct {
		e    cluster.Executor
		want bool
	}{
		{cluster.Executor{State: cluster.Running, Health: cluster.HealthPassing}, false},
		{cluster.Executor{State: cluster.Running, Health: cluster.HealthUnknown}, false},
		{cluster.Executor{State: cluster.Running, Health: cluster.HealthFailing}, true},
		{cluster.Executor{State: cluster.Failed}, true},
		{cluster.Executor{State: cluster.Backoff, Crashes: 1}, false},
		{cluster.Executor{State: cluster.Backoff, Crashes: 2}, true},
	} {
		if got := failing(tc.e); got != tc.want {
			t.Errorf("failing(%s, health %q, crashes %d) = %v, want %v", tc.e.State, tc.e.Health, tc.e.Crashes, got, tc.want)
		}
	}
}
