package procs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCPUListRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		out  string
	}{
		{"0", []int{0}, "0"},
		{"0-3", []int{0, 1, 2, 3}, "0-3"},
		{"0-1,4,6-7", []int{0, 1, 4, 6, 7}, "0-1,4,6-7"},
		{"", nil, ""},
	}
	for _, tt := range tests {
		got, err := ParseCPUList(tt.in)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if s := FormatCPUList(got); s != tt.out {
			t.Errorf("FormatCPUList(%v) = %q, want %q", got, s, tt.out)
		}
	}
	for _, bad := range []string{"a", "3-1", "1-x"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q): want error", bad)
		}
	}
}

// TestOnlineCPUs: a core in the affinity mask that is offline is not
// handed out (the worker, gear local and CheckCPUs all ask AllowedCPUs).
func TestOnlineCPUs(t *testing.T) {
	tests := []struct {
		affinity []int
		online   string
		want     string
	}{
		{[]int{0, 1, 2, 3}, "0-3", "[0 1 2 3]"},
		{[]int{0, 1, 2, 3}, "0,2-3", "[0 2 3]"},
		{[]int{0, 1, 2, 3}, "4-7", "[]"},
		{[]int{1, 5}, "0-7", "[1 5]"},
		{[]int{0, 1}, "", "[0 1]"},
	}
	for _, tt := range tests {
		got, err := onlineCPUs(tt.affinity, tt.online)
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("onlineCPUs(%v, %q) = %v, %v; want %s", tt.affinity, tt.online, got, err, tt.want)
		}
	}
	if _, err := onlineCPUs([]int{0}, "zero"); err == nil || !strings.Contains(err.Error(), onlineCPUsFile) {
		t.Errorf("a bad online list must be an error naming the file, got %v", err)
	}
	all, err := AllowedCPUs()
	if err != nil || len(all) == 0 {
		t.Fatalf("AllowedCPUs() = %v, %v", all, err)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{ID: "web-1", Command: []string{"true"}}
	tests := []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"ok", func(*Spec) {}, ""},
		{"no id", func(s *Spec) { s.ID = "" }, "id"},
		{"path id", func(s *Spec) { s.ID = "../x" }, "id"},
		{"no command", func(s *Spec) { s.Command = nil }, "empty command"},
		{"offline cpu", func(s *Spec) { s.CPUs = []int{4095} }, "cpu 4095 is not online or not allowed"},
		{"dup cpu", func(s *Spec) { s.CPUs = []int{0, 0} }, "twice"},
	}
	for _, tt := range tests {
		s := ok
		tt.mod(&s)
		err := s.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadSpec) {
			t.Errorf("%s: err %v, want ErrBadSpec mentioning %q", tt.name, err, tt.want)
		}
	}
}

// TestStartPinned checks the mask both from outside (/proc/PID/status) and
// from inside the child (what it read from /proc/self/status first thing).
func TestStartPinned(t *testing.T) {
	for _, cpu := range allowedCPUs(t, 1) {
		spec := shSpec(t, "pinned", "")
		spec.Command = helperCommand(t)
		spec.Env = helperEnv("cpus", "MARK=m1")
		spec.CPUs = []int{cpu}
		p, err := Start(spec)
		if err != nil {
			t.Fatal(err)
		}
		want := strconv.Itoa(cpu)
		if got := cpusAllowed(t, p.PID()); got != want {
			t.Errorf("Cpus_allowed_list %q, want %q", got, want)
		}
		waitFor(t, 10*time.Second, "child to report its cpus", func() bool {
			return fileContains(spec.LogFile(), "env-mark=m1")
		})
		if !fileContains(spec.LogFile(), "self-cpus="+want+"\n") {
			b, _ := os.ReadFile(spec.LogFile())
			t.Errorf("child saw another mask: %s", b)
		}
		if err := p.Stop(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		if st := p.Wait(); !st.Success() {
			t.Errorf("exit %v, want 0 (helper exits 0 on TERM)", st)
		}
	}
	// The starting thread's mask was restored: an unpinned start gets the
	// worker's whole mask.
	all, _ := AllowedCPUs()
	p, err := Start(Spec{ID: "unpinned", Command: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background(), true)
	if got := cpusAllowed(t, p.PID()); got != FormatCPUList(all) {
		t.Errorf("unpinned child Cpus_allowed_list %q, want %q", got, FormatCPUList(all))
	}
}

func TestStartBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	spec := shSpec(t, "busy", "sleep 30")
	spec.Ports = []int{port}
	_, err = Start(spec)
	want := fmt.Sprintf("port %d is already in use by another process", port)
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrPortInUse) {
		t.Fatalf("err %v, want one containing %q", err, want)
	}
	var pe *PortInUseError
	if !errors.As(err, &pe) || pe.Port != port {
		t.Fatalf("err %v: want a PortInUseError for %d", err, port)
	}
	if _, err := os.Stat(spec.PidFile()); !os.IsNotExist(err) {
		t.Fatalf("pid file left behind: %v", err)
	}
}

func TestStartMissingProgram(t *testing.T) {
	spec := shSpec(t, "missing", "")
	spec.Command = []string{"./no-such-program"}
	if _, err := Start(spec); err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("err %v, want one naming the program", err)
	}
}

// TestStopPreStopHookBeforeTerm: the hook writes a file; the program, on
// TERM, records whether the file was already there.
func TestStopPreStopHookBeforeTerm(t *testing.T) {
	spec := shSpec(t, "hooked", `trap 'if [ -f hook-ran ]; then echo after-hook > term; else echo before-hook > term; fi; exit 0' TERM
echo ready > ready
while :; do sleep 0.05; done`)
	spec.PreStop = []string{"/bin/sh", "-c", "echo $HOOK_MARK > hook-ran"}
	spec.Env = []string{"HOOK_MARK=hooked", "PATH=" + os.Getenv("PATH")}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "program ready", func() bool { return fileContains(filepath.Join(spec.Dir, "ready"), "ready") })
	if err := p.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(); !st.Success() {
		t.Errorf("exit %v, want 0 from the TERM trap", st)
	}
	if !fileContains(filepath.Join(spec.Dir, "hook-ran"), "hooked") {
		t.Error("hook did not run in Dir with Env")
	}
	if !fileContains(filepath.Join(spec.Dir, "term"), "after-hook") {
		b, _ := os.ReadFile(filepath.Join(spec.Dir, "term"))
		t.Errorf("program got TERM %q, want after-hook", b)
	}
	if _, err := os.Stat(spec.PidFile()); !os.IsNotExist(err) {
		t.Errorf("pid file not removed after exit: %v", err)
	}
}

func TestStopTermIgnoredGetsKilled(t *testing.T) {
	spec := shSpec(t, "stubborn", `trap "" TERM; echo ready > ready; while :; do sleep 0.05; done`)
	spec.StopTimeout = 300 * time.Millisecond
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "program ready", func() bool { return fileContains(filepath.Join(spec.Dir, "ready"), "ready") })
	if err := p.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	st := p.Wait()
	if st.Signal != syscall.SIGKILL {
		t.Fatalf("exit %v, want killed by SIGKILL", st)
	}
	if !strings.Contains(st.String(), "SIGKILL") {
		t.Errorf("status string %q does not name SIGKILL", st)
	}
}

func TestStopHardKillsGroup(t *testing.T) {
	// The shell backgrounds a grandchild in the same group; a hard stop
	// must take it too.
	spec := shSpec(t, "group", `sleep 300 & echo $! > child; wait`)
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, 10*time.Second, "grandchild pid", func() bool {
		b, err := os.ReadFile(filepath.Join(spec.Dir, "child"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && child > 0
	})
	if err := p.Stop(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(); st.Signal != syscall.SIGKILL {
		t.Errorf("exit %v, want SIGKILL", st)
	}
	waitFor(t, 5*time.Second, "grandchild gone", func() bool { return procGone(child) })
}

func TestLeaderDeathKillsGroup(t *testing.T) {
	spec := shSpec(t, "orphans", `sleep 300 & echo $! > child; wait`)
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, 10*time.Second, "grandchild pid", func() bool {
		b, err := os.ReadFile(filepath.Join(spec.Dir, "child"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && child > 0
	})
	syscall.Kill(p.PID(), syscall.SIGKILL) // the leader only
	p.Wait()
	waitFor(t, 5*time.Second, "grandchild gone", func() bool { return procGone(child) })
}

func TestProcessInfo(t *testing.T) {
	spec := shSpec(t, "info", "exec sleep 30")
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background(), true)
	if rss, err := p.RSS(); err != nil || rss <= 0 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
	if time.Since(p.StartedAt()) > time.Minute || p.StartedAt().After(time.Now()) {
		t.Errorf("StartedAt %v", p.StartedAt())
	}
	pid, ticks, err := readPidFile(spec.PidFile())
	if err != nil || pid != p.PID() || ticks == 0 {
		t.Errorf("pid file: %d %d %v", pid, ticks, err)
	}
	if _, done := p.Exited(); done {
		t.Error("Exited true while running")
	}
}

func TestAdoptStale(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content string }{
		{"dead pid", "999999\n123\n"},
		{"reused pid", fmt.Sprintf("%d\n1\n", os.Getpid())}, // alive, wrong start time
		{"garbage", "hello\n"},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, "x.pid")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Adopt(path)
		if !errors.Is(err, ErrStalePidFile) {
			t.Errorf("%s: err %v, want ErrStalePidFile", tt.name, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s: stale pid file not removed", tt.name)
		}
	}
}

func TestAdoptDirectAndWait(t *testing.T) {
	spec := shSpec(t, "direct", "exec sleep 300")
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ListPidFiles(spec.PidDir)
	if err != nil || len(files) != 1 || files[0] != spec.PidFile() {
		t.Fatalf("ListPidFiles = %v, %v", files, err)
	}
	a, err := Adopt(spec.PidFile())
	if err != nil {
		t.Fatal(err)
	}
	if a.PID() != p.PID() || !a.Adopted() || a.Spec().ID != "direct" {
		t.Fatalf("adopted pid %d id %q, want %d", a.PID(), a.Spec().ID, p.PID())
	}
	if d := a.StartedAt().Sub(p.StartedAt()); d > 2*time.Second || d < -2*time.Second {
		t.Errorf("adopted StartedAt %v vs %v", a.StartedAt(), p.StartedAt())
	}
	if err := a.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := a.Wait(); st.Known {
		t.Errorf("adopted exit status %v should be unknown", st)
	}
	if st := p.Wait(); st.Signal != syscall.SIGTERM {
		t.Errorf("exit %v, want SIGTERM", st)
	}
}

func TestLogRotation(t *testing.T) {
	spec := shSpec(t, "chatty", `i=0; while [ $i -lt 400 ]; do echo "line $i 0123456789012345678901234567890123456789"; i=$((i+1)); done; echo done-writing; exec sleep 300`)
	spec.LogMaxSize = 4096
	spec.LogMaxFiles = 2
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background(), true)
	log := spec.LogFile()
	waitFor(t, 10*time.Second, "rotation", func() bool {
		_, err := os.Stat(log + ".1")
		return err == nil
	})
	waitFor(t, 10*time.Second, "output done", func() bool {
		tail := Tail(log, 1)
		return len(tail) == 1 && tail[0] == "done-writing"
	})
	// The writer kept appending to the current file after its truncation.
	if fi, err := os.Stat(log); err != nil || fi.Size() > 16<<10 {
		t.Errorf("current log: %v, %v", fi, err)
	}
	if _, err := os.Stat(log + ".3"); !os.IsNotExist(err) {
		t.Errorf("more than LogMaxFiles rotated files kept")
	}
}

func TestRotateIfNeeded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	write := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	write("one\n")
	if rotated, _ := rotateIfNeeded(path, 10, 2); rotated {
		t.Fatal("rotated below max size")
	}
	for i, gen := range []string{"first-gen\n", "second-gen\n", "third-gen\n"} {
		write(gen)
		if rotated, err := rotateIfNeeded(path, 10, 2); !rotated || err != nil {
			t.Fatalf("gen %d: rotated=%v err=%v", i, rotated, err)
		}
		if read(path) != "" {
			t.Fatalf("gen %d: current not truncated", i)
		}
	}
	if got := read(path + ".1"); got != "third-gen\n" {
		t.Errorf(".1 = %q", got)
	}
	if got := read(path + ".2"); got != "second-gen\n" {
		t.Errorf(".2 = %q", got)
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Error(".3 exists with LogMaxFiles=2")
	}
	write("a\nb\n")
	if got := Tail(path, 3); strings.Join(got, "|") != "third-gen|a|b" {
		t.Errorf("Tail = %q, want it to reach into .1", got)
	}
	if got := Tail(filepath.Join(dir, "none.log"), 3); got != nil {
		t.Errorf("Tail of missing file = %q", got)
	}
}

// TestPinningLeavesWorkerThreadsAlone starts pinned processes concurrently
// and then checks that every thread of this (worker) process still has the
// full mask: the temporary narrowing never leaks to another thread.
func TestPinningLeavesWorkerThreadsAlone(t *testing.T) {
	cpu := allowedCPUs(t, 1)[0]
	all, _ := AllowedCPUs()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := Start(Spec{ID: "par-" + strconv.Itoa(i), Command: []string{"sleep", "30"}, CPUs: []int{cpu}})
			if err != nil {
				errs <- err
				return
			}
			p.Stop(context.Background(), true)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) != FormatCPUList(all) {
				t.Errorf("thread %s has mask %q, want %q", task.Name(), strings.TrimSpace(v), FormatCPUList(all))
			}
		}
	}
}
