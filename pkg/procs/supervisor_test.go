package procs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// fastPolicy keeps real-process tests short.
func fastPolicy() Policy {
	return Policy{
		Restart:     cluster.RestartAlways,
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
		MinUptime:   500 * time.Millisecond,
		Window:      time.Minute,
		MaxRestarts: 3,
	}
}

func TestSupervisorRestartsAfterKill9(t *testing.T) {
	cpus := allowedCPUs(t, 1)
	spec := shSpec(t, "victim", "exec sleep 300")
	spec.CPUs = cpus
	var mu sync.Mutex
	var seen []State
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{OnChange: func(st Status) {
		mu.Lock()
		seen = append(seen, st.State)
		mu.Unlock()
	}})
	runSupervisor(t, s)
	st := waitState(t, s, StateRunning, 10*time.Second)
	old := st.PID
	if got := cpusAllowed(t, old); got != FormatCPUList(cpus) {
		t.Fatalf("Cpus_allowed_list %q, want %q", got, FormatCPUList(cpus))
	}
	for round := range 3 {
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "restart with a new pid", func() bool {
			st = s.Status()
			return st.State == StateRunning && st.PID != 0 && st.PID != old
		})
		if got := cpusAllowed(t, st.PID); got != FormatCPUList(cpus) {
			t.Fatalf("round %d: restarted on %q, want %q", round, got, FormatCPUList(cpus))
		}
		if !strings.Contains(st.LastExit, "SIGKILL") || st.Restarts != round+1 {
			t.Fatalf("round %d: status %+v", round, st)
		}
		if fmt.Sprint(st.CPUs) != fmt.Sprint(cpus) {
			t.Fatalf("Status.CPUs %v", st.CPUs)
		}
		old = st.PID
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0] != StateStarting {
		t.Errorf("OnChange states %v", seen)
	}
}

func TestSupervisorCrashLoopFails(t *testing.T) {
	spec := shSpec(t, "crasher", `echo "boom: cannot open config"; exit 3`)
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{})
	errc := runSupervisor(t, s)
	var err error
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("no give-up within 30s")
	}
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Run = %v, want ErrFailed", err)
	}
	st := s.Status()
	if st.State != StateFailed || st.LastExit != "exit status 3" || !strings.Contains(st.LastError, "crash loop") {
		t.Fatalf("status %+v", st)
	}
	if len(st.LogTail) == 0 || st.LogTail[len(st.LogTail)-1] != "boom: cannot open config" {
		t.Fatalf("log tail %q", st.LogTail)
	}
	// 4 runs: the first and 3 restarts (MaxRestarts), then no more.
	if st.Restarts != 3 {
		t.Errorf("restarts %d, want 3", st.Restarts)
	}
	if n := strings.Count(readFile(t, spec.LogFile()), "boom"); n != 4 {
		t.Errorf("%d runs, want 4", n)
	}
	if err := s.Restart(context.Background(), nil); err == nil {
		t.Error("Restart after FAILED: want an error")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSupervisorNeverAndOnFailure(t *testing.T) {
	tests := []struct {
		restart cluster.RestartPolicy
		script  string
		want    State
	}{
		{cluster.RestartNever, "exit 0", StateStopped},
		{cluster.RestartNever, "exit 1", StateFailed},
		{cluster.RestartOnFailure, "exit 0", StateStopped},
	}
	for _, tt := range tests {
		t.Run(string(tt.restart)+"/"+tt.script, func(t *testing.T) {
			pol := fastPolicy()
			pol.Restart = tt.restart
			s := NewSupervisor(shSpec(t, "once", tt.script), pol, SupervisorOptions{})
			errc := runSupervisor(t, s)
			err := <-errc
			if st := s.Status(); st.State != tt.want || st.Restarts != 0 {
				t.Fatalf("status %+v (Run: %v)", st, err)
			}
		})
	}
}

func TestSupervisorDisjointCores(t *testing.T) {
	cpus := allowedCPUs(t, 2)
	var sups []*Supervisor
	for i, c := range cpus[:2] {
		spec := shSpec(t, fmt.Sprintf("exec-%d", i), "")
		spec.Command = helperCommand(t)
		spec.Env = helperEnv("cpus")
		spec.CPUs = []int{c}
		s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{})
		runSupervisor(t, s)
		sups = append(sups, s)
	}
	var got []string
	for i, s := range sups {
		st := waitState(t, s, StateRunning, 10*time.Second)
		got = append(got, cpusAllowed(t, st.PID))
		if got[i] != strconv.Itoa(cpus[i]) {
			t.Errorf("executor %d on %q, want %d", i, got[i], cpus[i])
		}
	}
	if got[0] == got[1] {
		t.Errorf("both executors on %q", got[0])
	}
}

func TestSupervisorBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	spec := shSpec(t, "web", "exec sleep 300")
	spec.Ports = []int{port}
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{})
	err = <-runSupervisor(t, s)
	st := s.Status()
	want := fmt.Sprintf("port %d is already in use by another process", port)
	if !errors.Is(err, ErrFailed) || st.State != StateFailed {
		t.Fatalf("Run = %v, status %+v", err, st)
	}
	if !strings.Contains(st.LastError, "crash loop") {
		t.Errorf("LastError %q", st.LastError)
	}
	if len(st.LogTail) == 0 || !strings.Contains(st.LogTail[len(st.LogTail)-1], want) {
		t.Errorf("LogTail %q, want the last line to contain %q", st.LogTail, want)
	}
}

func TestSupervisorBusyPortNamedWhileRetrying(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	spec := shSpec(t, "web", "exec sleep 300")
	spec.Ports = []int{port}
	pol := fastPolicy()
	pol.BackoffMin, pol.BackoffMax = time.Hour, time.Hour // stay in BACKOFF
	s := NewSupervisor(spec, pol, SupervisorOptions{})
	runSupervisor(t, s)
	st := waitState(t, s, StateBackoff, 10*time.Second)
	want := fmt.Sprintf("port %d is already in use by another process", port)
	if !strings.Contains(st.LastError, want) {
		t.Fatalf("LastError %q, want it to contain %q", st.LastError, want)
	}
	// Freeing the port and asking for a restart starts it at once.
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Restart(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.State != StateRunning {
		t.Fatalf("after restart from backoff: %+v", st)
	}
}

func TestSupervisorGracefulStop(t *testing.T) {
	spec := shSpec(t, "graceful", `trap 'echo got-term; exit 0' TERM; echo ready > ready; while :; do sleep 0.05; done`)
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{})
	errc := runSupervisor(t, s)
	st := waitState(t, s, StateRunning, 10*time.Second)
	waitFor(t, 10*time.Second, "program ready", func() bool { return fileContains(filepath.Join(spec.Dir, "ready"), "ready") })
	if err := s.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil after Stop", err)
	}
	got := s.Status()
	if got.State != StateStopped || got.LastExit != "exit status 0" || got.Restarts != 0 {
		t.Fatalf("status %+v", got)
	}
	if !procGone(st.PID) {
		t.Fatalf("pid %d still running", st.PID)
	}
}

func TestSupervisorRestartWithEnv(t *testing.T) {
	spec := shSpec(t, "reenv", "")
	spec.Command = helperCommand(t)
	spec.Env = helperEnv("cpus", "MARK=v1")
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{})
	runSupervisor(t, s)
	st := waitState(t, s, StateRunning, 10*time.Second)
	waitFor(t, 10*time.Second, "v1 output", func() bool { return fileContains(spec.LogFile(), "env-mark=v1") })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Restart(ctx, helperEnv("cpus", "MARK=v2")); err != nil {
		t.Fatal(err)
	}
	st2 := s.Status()
	if st2.State != StateRunning || st2.PID == st.PID || st2.Restarts != 0 {
		t.Fatalf("after Restart: %+v (old pid %d)", st2, st.PID)
	}
	waitFor(t, 10*time.Second, "v2 output", func() bool { return fileContains(spec.LogFile(), "env-mark=v2") })
	if !procGone(st.PID) {
		t.Errorf("old pid %d still running", st.PID)
	}
}

func TestSupervisorRecyclesOnMaxAge(t *testing.T) {
	spec := shSpec(t, "aging", "exec sleep 300")
	pol := fastPolicy()
	pol.MaxAge = 300 * time.Millisecond
	s := NewSupervisor(spec, pol, SupervisorOptions{CheckInterval: 50 * time.Millisecond})
	runSupervisor(t, s)
	first := waitState(t, s, StateRunning, 10*time.Second).PID
	waitRecycledForAge(t, s, first)
}

// waitRecycledForAge waits until s runs a process other than first,
// replaced for its age (a recycle, not a restart).
func waitRecycledForAge(t *testing.T, s *Supervisor, first int) {
	t.Helper()
	var st Status
	waitFor(t, 20*time.Second, "process recycled at max age", func() bool {
		st = s.Status()
		return st.State == StateRunning && st.PID != first && st.PID != 0
	})
	if !strings.Contains(st.LastError, "max age") || st.Restarts != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestSupervisorDetachAndStop(t *testing.T) {
	spec := shSpec(t, "detached", "exec sleep 300")
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	pid := waitState(t, s, StateRunning, 10*time.Second).PID
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if procGone(pid) {
		t.Fatal("detach stopped the process")
	}
	if _, err := os.Stat(spec.PidFile()); err != nil {
		t.Fatalf("pid file gone after detach: %v", err)
	}
	if err := s.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.State != StateStopped || !procGone(pid) {
		t.Fatalf("status %+v, gone=%v", st, procGone(pid))
	}
}

// TestAdoptAfterWorkerRestart: a stand-in worker process supervises an
// executor and is kill -9ed; the executor survives it, a new supervisor
// adopts it from the pid file, stops it, and nothing is left in /proc.
func TestAdoptAfterWorkerRestart(t *testing.T) {
	spec := shSpec(t, "survivor", `trap 'echo term-after-hook-$(cat hook-ran); exit 0' TERM; echo up; while :; do sleep 0.05; done`)
	spec.PreStop = []string{"/bin/sh", "-c", "echo yes > hook-ran"}
	js, _ := json.Marshal(spec)
	worker := exec.Command(helperCommand(t)[0])
	worker.Env = helperEnv("worker", "GEAR_PROCS_SPEC="+string(js))
	worker.Stderr = os.Stderr
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	waitFor(t, 20*time.Second, "executor pid file", func() bool {
		p, _, err := readPidFile(spec.PidFile())
		pid = p
		return err == nil
	})
	waitFor(t, 10*time.Second, "executor output", func() bool { return fileContains(spec.LogFile(), "up") })
	// "Worker restart": kill -9 the worker. No Pdeathsig, own group: the
	// executor lives on.
	worker.Process.Kill()
	worker.Wait()
	if procGone(pid) {
		t.Fatal("executor died with its worker")
	}

	files, err := ListPidFiles(spec.PidDir)
	if err != nil || len(files) != 1 {
		t.Fatalf("ListPidFiles = %v, %v", files, err)
	}
	p, err := Adopt(files[0])
	if err != nil {
		t.Fatal(err)
	}
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{Adopted: p})
	errc := runSupervisor(t, s)
	if st := s.Status(); st.State != StateRunning || st.PID != pid {
		t.Fatalf("adopted status %+v, want RUNNING pid %d", st, pid)
	}
	// An adopted executor that is killed is restarted like any other.
	syscall.Kill(pid, syscall.SIGKILL)
	var st Status
	waitFor(t, 10*time.Second, "restart of the adopted executor", func() bool {
		st = s.Status()
		return st.State == StateRunning && st.PID != pid && st.PID != 0
	})
	if !strings.Contains(st.LastExit, "unknown") {
		t.Errorf("LastExit %q: an adopted exit code is unknown", st.LastExit)
	}
	newPid := st.PID
	if err := s.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	for _, pid := range []int{pid, newPid} {
		if !procGone(pid) || !groupEmpty(pid) {
			t.Errorf("pid %d or its group left running", pid)
		}
	}
	if files, _ := ListPidFiles(spec.PidDir); len(files) != 0 {
		t.Errorf("pid files left: %v", files)
	}

	// Second round: adopt and stop gracefully (hook runs before TERM).
	worker = exec.Command(helperCommand(t)[0])
	worker.Env = helperEnv("worker", "GEAR_PROCS_SPEC="+string(js))
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "executor pid file", func() bool {
		p, _, err := readPidFile(spec.PidFile())
		pid = p
		return err == nil && p != newPid
	})
	worker.Process.Kill()
	worker.Wait()
	p, err = Adopt(spec.PidFile())
	if err != nil {
		t.Fatal(err)
	}
	s = NewSupervisor(spec, fastPolicy(), SupervisorOptions{Adopted: p})
	if err := s.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if !procGone(pid) {
		t.Errorf("pid %d left running", pid)
	}
	waitFor(t, 5*time.Second, "TERM trap output", func() bool { return fileContains(spec.LogFile(), "term-after-hook-yes") })
	if _, err := os.Stat(spec.PidFile()); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
}

// fakeClock hands out timers the test fires by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers chan fakeTimer
}

type fakeTimer struct {
	d time.Duration
	c chan time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.timers <- fakeTimer{d, c}
	return c
}

// TestSupervisorBackoffFakeClock steps the supervisor's backoff by hand:
// the delays it asks for are the core's (100ms doubling, no jitter), and it
// does not restart before the timer fires.
func TestSupervisorBackoffFakeClock(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_000_000, 0), timers: make(chan fakeTimer, 100)}
	spec := shSpec(t, "stepped", "exit 1")
	s := NewSupervisor(spec, DefaultPolicy(), SupervisorOptions{Clock: clock})
	runSupervisor(t, s)
	for i, want := range []time.Duration{100, 200, 400, 800} {
		var tm fakeTimer
		select {
		case tm = <-clock.timers:
		case <-time.After(10 * time.Second):
			t.Fatalf("step %d: no backoff timer", i)
		}
		if tm.d != want*time.Millisecond {
			t.Fatalf("step %d: delay %v, want %v", i, tm.d, want*time.Millisecond)
		}
		if st := s.Status(); st.State != StateBackoff || st.Restarts != i {
			t.Fatalf("step %d: status %+v", i, st)
		}
		clock.mu.Lock()
		clock.now = clock.now.Add(tm.d)
		clock.mu.Unlock()
		tm.c <- clock.Now()
	}
}

func TestSupervisorBadSpecFailsAtOnce(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		pol  Policy
	}{
		{"offline cpu", Spec{ID: "x", Command: []string{"true"}, CPUs: []int{4095}}, fastPolicy()},
		{"bad policy", Spec{ID: "x", Command: []string{"true"}}, Policy{Restart: "sometimes"}},
	}
	for _, tt := range tests {
		s := NewSupervisor(tt.spec, tt.pol, SupervisorOptions{})
		err := s.Run(context.Background())
		if !errors.Is(err, ErrFailed) || s.Status().State != StateFailed {
			t.Errorf("%s: Run = %v, status %+v", tt.name, err, s.Status())
		}
	}
}

// A command that cannot be executed is FAILED at once, with the reason and
// a hint, and is not restarted.
func TestSupervisorExecFailureFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("not-executable.sh", "#!/bin/sh\nexit 0\n", 0o644)
	write("garbage", "\x00\x01\x02 not a program\n", 0o755)
	write("bad-interpreter.sh", "#!/nonexistent/sh\nexit 0\n", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		command string
		want    string
	}{
		{"./server", "exec ./server: no such file or directory (the command must exist in the bundle dir or PATH)"},
		{"gear-no-such-command", "exec gear-no-such-command: not found in PATH (the command must exist in the bundle dir or PATH"},
		{"./not-executable.sh", "exec ./not-executable.sh: permission denied (it must be an executable file"},
		{"./subdir", "exec ./subdir: permission denied"},
		{"./garbage", "exec ./garbage: exec format error (not a program this machine can run"},
		{"./bad-interpreter.sh", "exec ./bad-interpreter.sh: no such file or directory (the file is there: the interpreter on its #! line"},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			spec := Spec{ID: "exec-fail", Command: []string{tt.command, "-port", "1"}, Dir: dir,
				LogDir: filepath.Join(t.TempDir(), "log"), StopTimeout: time.Second}
			var states []State
			var mu sync.Mutex
			s := NewSupervisor(spec, Policy{MaxRestarts: -1}, SupervisorOptions{OnChange: func(st Status) {
				mu.Lock()
				states = append(states, st.State)
				mu.Unlock()
			}})
			errc := runSupervisor(t, s)
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatalf("still supervising after 10s: %+v", s.Status())
			}
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("Run = %v, want ErrFailed", err)
			}
			st := s.Status()
			if st.State != StateFailed || !strings.Contains(st.LastError, tt.want) {
				t.Fatalf("status %+v\nwant FAILED with last error containing %q", st, tt.want)
			}
			if st.Restarts != 0 {
				t.Errorf("restarts %d, want 0", st.Restarts)
			}
			mu.Lock()
			defer mu.Unlock()
			if slices.Contains(states, StateBackoff) {
				t.Errorf("went through BACKOFF: %v", states)
			}
			if !fileContains(spec.LogFile(), "gear: "+tt.want) {
				t.Errorf("the executor log does not say why:\n%s", readFile(t, spec.LogFile()))
			}
		})
	}
}

// A supervisor created with the crash count of a crash loop under way (a
// worker restart) gives up after what is left of MaxRestarts, not after a
// fresh count.
func TestSupervisorResumesCrashCount(t *testing.T) {
	spec := shSpec(t, "resumed", `echo run; exit 1`)
	s := NewSupervisor(spec, fastPolicy(), SupervisorOptions{InitialRestarts: 2, InitialCrashes: 2})
	if st := s.Status(); st.Crashes != 2 {
		t.Fatalf("crashes before the first run: %d, want 2", st.Crashes)
	}
	errc := runSupervisor(t, s)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("Run = %v, want ErrFailed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no give-up within 30s")
	}
	// 2 crashes before, MaxRestarts 3: two more runs, the second one the
	// fourth crash in a row.
	if n := strings.Count(readFile(t, spec.LogFile()), "run"); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
	if st := s.Status(); st.Crashes != 4 || st.Restarts != 3 || !strings.Contains(st.LastError, "4 runs in a row") {
		t.Errorf("status %+v", st)
	}
}

// backoffDelays runs a supervisor over a program that exits at once on a
// fake clock and returns the first n backoff delays it asks for.
func backoffDelays(t *testing.T, id string, rnd Rand, n int) []time.Duration {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_000_000, 0), timers: make(chan fakeTimer, 100)}
	pol := DefaultPolicy()
	pol.MaxRestarts = -1
	s := NewSupervisor(shSpec(t, id, "exit 1"), pol, SupervisorOptions{Clock: clock, Rand: rnd})
	runSupervisor(t, s)
	var out []time.Duration
	for i := range n {
		var tm fakeTimer
		select {
		case tm = <-clock.timers:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s step %d: no backoff timer", id, i)
		}
		out = append(out, tm.d)
		clock.mu.Lock()
		clock.now = clock.now.Add(tm.d)
		clock.mu.Unlock()
		tm.c <- clock.Now()
	}
	return out
}

// TestSupervisorJitter: with a seeded Rand (as the worker passes) the
// supervisor's delays carry jitter: two seeds give different delays, and
// every delay stays within the documented bounds, the exponential delay
// minus at most 20%.
func TestSupervisorJitter(t *testing.T) {
	const n = 6
	a := backoffDelays(t, "jitter-a", rand.New(rand.NewPCG(1, 2)), n)
	b := backoffDelays(t, "jitter-b", rand.New(rand.NewPCG(3, 4)), n)
	if slices.Equal(a, b) {
		t.Fatalf("two seeds gave the same delays %v: no jitter", a)
	}
	for _, ds := range [][]time.Duration{a, b} {
		for i, d := range ds {
			full := min(100*time.Millisecond<<i, 5*time.Second) // DefaultPolicy: 100ms doubling up to 5s
			if lo := full - full/5; d <= lo || d > full {
				t.Errorf("delay %d = %v, want in (%v, %v]", i, d, lo, full)
			}
		}
	}
	// The same seed gives the same delays: a failing run can be replayed.
	if c := backoffDelays(t, "jitter-c", rand.New(rand.NewPCG(1, 2)), n); !slices.Equal(a, c) {
		t.Fatalf("same seed, different delays: %v and %v", a, c)
	}
}

// TestNewRandSeeded: the worker's jitter sources are seeded differently.
func TestNewRandSeeded(t *testing.T) {
	if NewRand().Uint64() == NewRand().Uint64() {
		t.Fatal("two NewRand sources gave the same first number: not seeded from crypto/rand")
	}
}

// TestSupervisorRecyclesOnMaxAgeFakeClock: max-age is measured on the
// injected clock, so the supervisor recycles once the clock says the
// process is old, without anyone waiting for real time to pass.
func TestSupervisorRecyclesOnMaxAgeFakeClock(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_000_000, 0), timers: make(chan fakeTimer, 100)}
	pol := fastPolicy()
	pol.MaxAge = time.Hour
	s := NewSupervisor(shSpec(t, "aging-fake", "exec sleep 300"), pol, SupervisorOptions{Clock: clock, CheckInterval: time.Minute})
	runSupervisor(t, s)
	first := waitState(t, s, StateRunning, 10*time.Second).PID
	nextCheck := func() fakeTimer {
		t.Helper()
		select {
		case tm := <-clock.timers:
			if tm.d != time.Minute {
				t.Fatalf("timer of %v, want the 1m check interval", tm.d)
			}
			return tm
		case <-time.After(10 * time.Second):
			t.Fatal("no max-age check timer")
		}
		return fakeTimer{}
	}
	// Younger than max age: a check leaves the process alone.
	clock.mu.Lock()
	clock.now = clock.now.Add(30 * time.Minute)
	clock.mu.Unlock()
	nextCheck().c <- clock.Now()
	second := nextCheck() // the check re-armed itself, so the first one is done
	if st := s.Status(); st.PID != first || st.LastError != "" {
		t.Fatalf("recycled before max age: %+v", st)
	}
	clock.mu.Lock()
	clock.now = clock.now.Add(31 * time.Minute)
	clock.mu.Unlock()
	second.c <- clock.Now()
	// Fire every check from now on (the new process arms its own).
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case tm := <-clock.timers:
				tm.c <- clock.Now()
			case <-done:
				return
			}
		}
	}()
	waitRecycledForAge(t, s, first)
}
