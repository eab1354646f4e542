package procs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needCgroups fails in CI and skips elsewhere when this machine cannot
// create cgroups with memory and pids limits.
func needCgroups(t *testing.T) {
	t.Helper()
	c, err := newCgroup(Spec{ID: "probe-" + strconv.Itoa(os.Getpid()), CgroupParent: "gear-test", MaxPids: 10})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cgroups: %v", err)
		}
		t.Skipf("cgroups: %v", err)
	}
	c.remove()
}

// The process starts inside its cgroup: /proc/PID/cgroup names it from
// the first instruction (the shell reads its own), and the worker's
// thread is back in its own afterwards.
func TestCgroupStartsInside(t *testing.T) {
	needCgroups(t)
	spec := shSpec(t, "cg-inside", "cat /proc/self/cgroup; exec sleep 30")
	spec.Memory, spec.MaxPids, spec.CgroupParent = 64<<20, 20, "gear-test"
	before, _ := os.ReadFile("/proc/thread-self/cgroup")
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background(), true)
	waitFor(t, 10*time.Second, "the child to print its cgroups", func() bool { return fileContains(spec.LogFile(), "gear-test/cg-inside") })
	b, _ := os.ReadFile(spec.LogFile())
	if strings.Count(string(b), "gear-test/cg-inside") < 2 && !strings.Contains(string(b), "0::") {
		t.Errorf("the child's first look at its cgroups: %s", b)
	}
	own, _ := ownCgroups()
	limit, _ := os.ReadFile(filepath.Join(cgroupRoot, "memory", own["memory"], "gear-test/cg-inside/memory.limit_in_bytes"))
	if p.cg.v2 == "" && strings.TrimSpace(string(limit)) != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes %q", limit)
	}
	after, _ := os.ReadFile("/proc/self/cgroup")
	if strings.Contains(string(after), "gear-test") {
		t.Errorf("the worker stayed in the cgroup: %s (was %s)", after, before)
	}
	p.Stop(context.Background(), true)
	p.Wait()
	for _, d := range p.cg.v1 {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s not removed after the exit: %v", d, err)
		}
	}
}

// A process that allocates beyond its memory limit is killed by the
// kernel, and its exit says "out of memory".
func TestCgroupOutOfMemory(t *testing.T) {
	needCgroups(t)
	// The shell itself holds a 300MB string: it is the largest task, so
	// the OOM killer picks it.
	spec := shSpec(t, "cg-oom", `x=$(head -c 300000000 /dev/zero | tr '\0' a); echo survived ${#x}`)
	spec.Memory, spec.CgroupParent = 32<<20, "gear-test"
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan ExitStatus, 1)
	go func() { done <- p.Wait() }()
	select {
	case st := <-done:
		if !st.OOM || st.Signal != syscall.SIGKILL || !strings.HasPrefix(st.String(), "out of memory") {
			b, _ := os.ReadFile(spec.LogFile())
			t.Fatalf("exit %+v (%s), want out of memory; log: %s", st, st, b)
		}
	case <-time.After(60 * time.Second):
		p.Stop(context.Background(), true)
		t.Fatal("not killed within 60s")
	}
}

// max-pids stops a fork bomb: bounded (20 tries), never more than the
// limit alive at once.
func TestCgroupMaxPids(t *testing.T) {
	needCgroups(t)
	// The bomb runs in a child shell, which dies at its first failed fork
	// (dash: "Cannot fork"); the leader reports it and stays.
	spec := shSpec(t, "cg-pids", `/bin/sh -c 'i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done'; echo "bomb stopped: $?"; exec sleep 30`)
	spec.MaxPids, spec.CgroupParent = 5, "gear-test"
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background(), true)
	waitFor(t, 20*time.Second, "the bomb to stop", func() bool { return fileContains(spec.LogFile(), "bomb stopped") })
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) > 2 && fields[2] == strconv.Itoa(p.PID()) {
			n++
		}
	}
	if n > 5 || n < 2 {
		t.Fatalf("%d processes in the group, want at most max-pids 5 (and some)", n)
	}
	b, _ := os.ReadFile(spec.LogFile())
	if !strings.Contains(strings.ToLower(string(b)), "fork") || strings.Contains(string(b), "bomb stopped: 0") {
		t.Errorf("no fork failure in the log: %s", b)
	}
}
