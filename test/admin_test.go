package test

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replCall sends one line to the worker's admin REPL and returns the answer.
func replCall(t *testing.T, sock, line string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('>'); err != nil { // the first prompt
		t.Fatalf("no prompt: %v", err)
	}
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	out, err := r.ReadString('>') // up to the next prompt
	if err != nil && !strings.Contains(out, "\n") {
		t.Fatalf("no answer to %q: %v", line, err)
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(out), "gear>"))
}

// The worker's admin REPL (cluster-master's verbs) on a 0600 unix socket,
// and SIGHUP as a rolling restart.
func TestAdminREPLAndSignals(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1})
	waitFor(t, 20*time.Second, "a leader", func() bool { return c.leader() != "" })
	id, pids := submitHello(t, c, 2)
	sock := filepath.Join(c.dir, "worker0", "admin.sock")
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v, want 0600", st.Mode().Perm())
	}
	if got := replCall(t, sock, "size"); got != "2" {
		t.Fatalf("size = %q, want 2", got)
	}
	var replPIDs map[string]int
	if err := json.Unmarshal([]byte(replCall(t, sock, "pids")), &replPIDs); err != nil {
		t.Fatal(err)
	}
	for eid, pid := range pids {
		if replPIDs[eid] != pid {
			t.Fatalf("REPL pids %v disagree with the API %v", replPIDs, pids)
		}
	}
	if help := replCall(t, sock, "help"); !strings.Contains(help, "resize") || !strings.Contains(help, "kill") {
		t.Fatalf("help lacks the verbs: %q", help)
	}
	if got := replCall(t, sock, "restart "+id+".web.0"); got != "restarted" {
		t.Fatalf("restart: %q", got)
	}
	waitFor(t, 20*time.Second, "executor 0 to run under a new pid, executor 1 untouched", func() bool {
		now := runningPIDs(c.app(id))
		return now != nil && now[id+".web.0"] != pids[id+".web.0"] && now[id+".web.1"] == pids[id+".web.1"]
	})
	if got := replCall(t, sock, "resize "+id+" 1"); !strings.Contains(got, "resized") {
		t.Fatalf("resize: %q", got)
	}
	waitFor(t, 20*time.Second, "the app to shrink to one executor", func() bool {
		a := c.app(id)
		return a != nil && len(a.Executors) == 1 && runningPIDs(a) != nil
	})

	before := runningPIDs(c.app(id))
	killPIDsAtCleanup(t, before)
	c.kill("worker0", syscall.SIGHUP)
	waitFor(t, 20*time.Second, "SIGHUP to restart every executor", func() bool {
		now := runningPIDs(c.app(id))
		if now == nil {
			return false
		}
		for eid, pid := range now {
			if pid == before[eid] {
				return false
			}
		}
		return true
	})
	last := runningPIDs(c.app(id))
	replCall(t, sock, "stop")
	select {
	case <-c.procs["worker0"].done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit after the REPL's stop")
	}
	for _, pid := range last {
		waitFor(t, 10*time.Second, "executor "+strconv.Itoa(pid)+" to be stopped with the worker", func() bool { return !alive(pid) })
	}
}
