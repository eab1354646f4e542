package procs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child programs the tests need, selected by
// GEAR_PROCS_HELPER.
func TestMain(m *testing.M) {
	RunShim()
	switch os.Getenv("GEAR_PROCS_HELPER") {
	case "":
		os.Exit(m.Run())
	case "cpus":
		// Report our own affinity from inside, then wait to be stopped.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		b, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				fmt.Printf("self-cpus=%s\n", strings.TrimSpace(v))
			}
		}
		fmt.Printf("env-mark=%s\n", os.Getenv("MARK"))
		os.Stdout.Sync()
		<-term
		os.Exit(0)
	case "worker":
		// A stand-in worker: supervise the spec from GEAR_PROCS_SPEC and
		// block until killed (the test kill -9s it).
		var spec Spec
		if err := json.Unmarshal([]byte(os.Getenv("GEAR_PROCS_SPEC")), &spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		s := NewSupervisor(spec, DefaultPolicy(), SupervisorOptions{})
		if err := s.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(2)
	}
}

// helperCommand runs this test binary as the named helper.
func helperCommand(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe}
}

func helperEnv(mode string, extra ...string) []string {
	return append(append(os.Environ(), "GEAR_PROCS_HELPER="+mode), extra...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procGone reports whether pid no longer runs (gone, or a zombie nobody
// reaps: this machine's pid 1 does not reap orphans).
func procGone(pid int) bool {
	st, err := readStat(pid)
	return err != nil || st.state == 'Z' || st.state == 'X'
}

func cpusAllowed(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list for pid %d", pid)
	return ""
}

func fileContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

func allowedCPUs(t *testing.T, n int) []int {
	t.Helper()
	cpus, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < n {
		if os.Getenv("CI") == "true" {
			t.Fatalf("need %d usable cpus, have %v", n, cpus)
		}
		t.Skipf("need %d usable cpus, have %v", n, cpus)
	}
	return cpus[:n]
}

func shSpec(t *testing.T, id, script string) Spec {
	t.Helper()
	dir := t.TempDir()
	return Spec{
		ID:          id,
		Command:     []string{"/bin/sh", "-c", script},
		Dir:         dir,
		LogDir:      filepath.Join(dir, "log"),
		PidDir:      filepath.Join(dir, "run"),
		StopTimeout: 5 * time.Second,
	}
}

// runSupervisor runs s in the background; the cleanup stops it hard and
// waits for Run to return.
func runSupervisor(t *testing.T, s *Supervisor) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx, true); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	return errc
}

func waitState(t *testing.T, s *Supervisor, want State, timeout time.Duration) Status {
	t.Helper()
	var st Status
	waitFor(t, timeout, "state "+string(want), func() bool {
		st = s.Status()
		return st.State == want
	})
	return st
}
