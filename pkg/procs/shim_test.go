package procs

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartPassesListenersWithOwnPid: a spec with Listeners starts the
// program through the shim, which execs in place, so the program sees
// LISTEN_PID equal to its own pid, LISTEN_FDS and LISTEN_FDNAMES, and
// the socket at fd 3, and the pid Start reports is that same process.
func TestStartPassesListenersWithOwnPid(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec := shSpec(t, "activated", `echo "pid=$$ listen_pid=$LISTEN_PID fds=$LISTEN_FDS names=$LISTEN_FDNAMES fd3=$(readlink /proc/$$/fd/3)"; exec sleep 300`)
	spec.Listeners = []*os.File{f}
	spec.ListenerNames = []string{"http"}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background(), true) })
	var line string
	waitFor(t, 10*time.Second, "the program's report", func() bool {
		b, _ := os.ReadFile(spec.LogFile())
		line = strings.TrimSpace(string(b))
		return strings.Contains(line, "fd3=")
	})
	pid := strconv.Itoa(p.PID())
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	want := "pid=" + pid + " listen_pid=" + pid + " fds=1 names=http fd3=socket:[" + strconv.FormatUint(st.Ino, 10) + "]"
	if line != want {
		t.Fatalf("the program saw\n%s\nwant\n%s", line, want)
	}
}

func TestStartThroughShimMissingProgram(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec := shSpec(t, "missing", "")
	spec.Command = []string{"./no-such-server"}
	spec.Listeners = []*os.File{f}
	if _, err := Start(spec); err == nil || !strings.Contains(err.Error(), "no-such-server") {
		t.Fatalf("Start = %v, want an error naming the missing program", err)
	}
	if _, err := os.Stat(filepath.Join(spec.PidDir, "missing.pid")); err == nil {
		t.Fatal("a pid file was left for a process that never started")
	}
}

// TestSupervisorUnhealthyRestartsByPolicy: Unhealthy stops the process and
// the policy restarts it, counted as a restart, with the reason shown.
func TestSupervisorUnhealthyRestartsByPolicy(t *testing.T) {
	s := NewSupervisor(shSpec(t, "sick", "exec sleep 300"), fastPolicy(), SupervisorOptions{})
	runSupervisor(t, s)
	st := waitState(t, s, StateRunning, 10*time.Second)
	old := st.PID
	if err := s.Unhealthy(context.Background(), "GET /health: 500"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a restart with a new pid", func() bool {
		st = s.Status()
		return st.State == StateRunning && st.PID != 0 && st.PID != old
	})
	if st.Restarts != 1 || !strings.Contains(st.LastError, "unhealthy: GET /health: 500") || !strings.Contains(st.LastExit, "unhealthy") {
		t.Fatalf("status after the unhealthy restart: %+v", st)
	}

	never := fastPolicy()
	never.Restart = "never"
	s2 := NewSupervisor(shSpec(t, "sick-never", "exec sleep 300"), never, SupervisorOptions{})
	runSupervisor(t, s2)
	waitState(t, s2, StateRunning, 10*time.Second)
	if err := s2.Unhealthy(context.Background(), "tcp connect refused"); err != nil {
		t.Fatal(err)
	}
	waitState(t, s2, StateFailed, 10*time.Second) // a failure under "never", as a crash would be
}
