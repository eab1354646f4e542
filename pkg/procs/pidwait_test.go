package procs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWaitsHoldNoThreadPerProcess starts and adopts many processes and
// checks that waiting for them does not cost an OS thread each (a blocking
// wait4 or poll per process did: a worker with 1000 executors had about
// 1000 threads), and that every exit is still seen, by the starter and by
// the adopter.
func TestWaitsHoldNoThreadPerProcess(t *testing.T) {
	const n = 100
	before := threads(t)
	var started, adopted []*Process
	for i := range n {
		spec := shSpec(t, fmt.Sprintf("many-%d", i), "exec sleep 300")
		p, err := Start(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-p.PID(), syscall.SIGKILL) })
		started = append(started, p)
		a, err := Adopt(spec.PidFile())
		if err != nil {
			t.Fatal(err)
		}
		adopted = append(adopted, a)
	}
	// Let every waiter reach its wait.
	time.Sleep(200 * time.Millisecond)
	if got := threads(t); got-before > n/4 {
		t.Errorf("%d threads with %d started and %d adopted processes waited on (%d before): a thread per wait", got, n, n, before)
	}
	for _, p := range started {
		if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for i := range n {
		for _, p := range []*Process{started[i], adopted[i]} {
			select {
			case <-p.Done():
			case <-deadline:
				t.Fatalf("process %d (adopted %v) exited but its exit was not seen", p.PID(), p.Adopted())
			}
		}
		if st := started[i].Wait(); st.Signal != syscall.SIGKILL {
			t.Errorf("pid %d: exit %v, want SIGKILL", started[i].PID(), st)
		}
	}
}

// threads is this process's OS thread count.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}
