package test

// Worker features, tested with real master, worker and executor processes:
// CPU pinning, restart after kill -9, crash-loop detection, graceful stop
// (pre-stop hook, SIGTERM, SIGKILL after the stop timeout), scaling, rolling
// restart, adoption of executors across a worker restart, and the worker's
// own SIGTERM.
//
// The executors are small /bin/sh scripts (testBundle) that write what
// happens to them into a directory of the test (GEAR_TEST_OUT): one line per
// start in <executor>.starts, and start/term events with nanosecond times in
// "events". Every executor carries GEAR_TEST_OUT in its environment, which is
// how sweepExecutors finds (and kills) whatever a test left behind.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
)

// serverScript runs until stopped. It records each start, and on SIGTERM
// records the time and whether the pre-stop hook had finished; it exits
// then unless IGNORE_TERM=1. `sleep` is in the same process group, so the
// group-wide SIGTERM ends it and the trap runs at once.
const serverScript = `#!/bin/sh
out="$GEAR_TEST_OUT"
id="$GEAR_EXECUTOR_ID"
# A copy of this executor that is still alive is a bug: say so.
if [ -f "$out/$id.starts" ]; then
	while read -r old; do
		[ "$(cat /proc/$old/comm 2>/dev/null)" = server.sh ] || continue
		grep -qz "^GEAR_EXECUTOR_ID=$id\$" /proc/$old/environ 2>/dev/null || continue
		set -- $(cat /proc/$old/stat 2>/dev/null)
		[ "$3" = Z ] || echo "overlap $id $$ $(date +%s%N) $old" >> "$out/events"
	done < "$out/$id.starts"
fi
echo "$$" >> "$out/$id.starts"
echo "start $id $$ $(date +%s%N)" >> "$out/events"
on_term() {
	hook=no-hook
	[ -e "$out/$id.hook-done" ] && hook=hook-done
	echo "term $id $$ $(date +%s%N) $hook" >> "$out/events"
	[ "$IGNORE_TERM" = 1 ] || exit 0
}
trap on_term TERM
while :; do sleep 1; done
`

// hookScript is a pre-stop hook that takes a second, so that a SIGTERM
// sent without waiting for it would be seen before hook-done exists.
const hookScript = `#!/bin/sh
echo "hook $GEAR_EXECUTOR_ID $$ $(date +%s%N)" >> "$GEAR_TEST_OUT/events"
sleep 1
touch "$GEAR_TEST_OUT/$GEAR_EXECUTOR_ID.hook-done"
`

// crashScript exits at once with status 3.
const crashScript = `#!/bin/sh
echo "$$" >> "$GEAR_TEST_OUT/$GEAR_EXECUTOR_ID.starts"
echo "crashing on purpose"
exit 3
`

// testBundle writes a .tar.gz holding gear-app.conf (an app "name" with
// one process group "main" made of the given manifest lines) and the three
// scripts. GEAR_TEST_OUT is set to out for every executor.
func testBundle(t *testing.T, out, name string, lines ...string) string {
	t.Helper()
	manifest := fmt.Sprintf("name = %q\nprocesses {\n  main {\n    %s\n    env { GEAR_TEST_OUT = %q }\n  }\n}\n",
		name, strings.Join(lines, "\n    "), out)
	path := filepath.Join(t.TempDir(), name+".tar.gz")
	writeTarGz(t, path, map[string]string{
		"gear-app.conf": manifest,
		"server.sh":     serverScript,
		"hook.sh":       hookScript,
		"crash.sh":      crashScript,
	})
	return path
}

// workerCluster starts one master and one worker, waits until the worker
// is registered, and returns the cluster and a fresh GEAR_TEST_OUT
// directory. Executors still alive after the cluster stopped fail the test
// (and are killed).
func workerCluster(t *testing.T, conf string) (*testCluster, string) {
	t.Helper()
	out := t.TempDir()
	// Registered before newCluster's cleanup, so it runs after stopAll.
	t.Cleanup(func() { sweepExecutors(t, out) })
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: conf})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	waitFor(t, 20*time.Second, "the worker to register", func() bool { return len(c.aliveWorkers()) == 1 })
	return c, out
}

func (c *testCluster) aliveWorkers() []cluster.Worker {
	c.t.Helper()
	stdout, _, code := c.gear("workers", "-json")
	if code != 0 {
		return nil
	}
	var ws []cluster.Worker
	if err := json.Unmarshal([]byte(stdout), &ws); err != nil {
		c.t.Fatalf("workers -json: %v\n%s", err, stdout)
	}
	var alive []cluster.Worker
	for _, w := range ws {
		if w.Alive {
			alive = append(alive, w)
		}
	}
	return alive
}

// placeableWorkers are the alive workers the leader places executors on:
// those it also sees alive in the gossip pool. A worker that started
// before the master listened joins the pool a little later (its join is
// retried in the background) and gets no placements until then.
func (c *testCluster) placeableWorkers() []cluster.Worker {
	c.t.Helper()
	var ws []cluster.Worker
	for _, w := range c.aliveWorkers() {
		if w.Gossip == "alive" {
			ws = append(ws, w)
		}
	}
	return ws
}

// submit submits a bundle and returns the app id.
func (c *testCluster) submit(bundle string, args ...string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.mustGear(append([]string{"app", "submit", bundle, "-quiet"}, args...)...))
	if _, err := strconv.Atoi(id); err != nil {
		c.t.Fatalf("app submit printed %q, want an app id", id)
	}
	return id
}

// appInfo is `gear app info ID -json`; nil when the CLI fails.
func (c *testCluster) appInfo(id string) *cluster.App {
	c.t.Helper()
	stdout, stderr, code := c.gear("app", "info", id, "-json")
	if code != 0 {
		c.t.Logf("app info %s: exit %d: %s", id, code, stderr)
		return nil
	}
	var a cluster.App
	if err := json.Unmarshal([]byte(stdout), &a); err != nil {
		c.t.Fatalf("app info -json: %v\n%s", err, stdout)
	}
	return &a
}

// waitRunning waits until app id is RUNNING with n executors, each with a
// live PID, and returns the app.
func (c *testCluster) waitRunning(id string, n int, timeout time.Duration) *cluster.App {
	c.t.Helper()
	var a *cluster.App
	waitFor(c.t, timeout, fmt.Sprintf("app %s RUNNING with %d live executors", id, n), func() bool {
		a = c.appInfo(id)
		pids := runningPIDs(a)
		if len(pids) != n || len(a.Executors) != n {
			return false
		}
		for _, pid := range pids {
			if !alive(pid) {
				return false
			}
		}
		return true
	})
	return a
}

// killApp kills app id and waits until it is KILLED and every pid is gone.
func (c *testCluster) killApp(id string, pids []int) {
	c.t.Helper()
	c.mustGear("app", "kill", id)
	waitFor(c.t, 30*time.Second, "app "+id+" KILLED with its processes gone", func() bool {
		a := c.appInfo(id)
		if a == nil || a.State != cluster.AppKilled {
			return false
		}
		return !slices.ContainsFunc(pids, alive)
	})
}

func pidsOf(a *cluster.App) []int {
	var out []int
	for _, e := range a.Executors {
		out = append(out, e.PID)
	}
	return out
}

// cpusAllowed reads Cpus_allowed_list of a process.
func cpusAllowed(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			cpus, err := procs.ParseCPUList(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("pid %d: %v", pid, err)
			}
			return cpus
		}
	}
	t.Fatalf("pid %d: no Cpus_allowed_list in /proc/%d/status", pid, pid)
	return nil
}

// needCores skips when this machine cannot give n exclusive cores.
func needCores(t *testing.T, n int) {
	t.Helper()
	cpus, err := procs.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < n {
		t.Skipf("needs %d cores, this process may use %v", n, cpus)
	}
}

// executorProcs lists live processes (not zombies) whose environment has
// GEAR_TEST_OUT=out: pid -> [comm, GEAR_EXECUTOR_ID].
func executorProcs(out string) map[int][2]string {
	found := map[int][2]string{}
	ents, _ := os.ReadDir("/proc")
	want := "GEAR_TEST_OUT=" + out
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		var mine bool
		var exec string
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == want {
				mine = true
			}
			if v, ok := strings.CutPrefix(kv, "GEAR_EXECUTOR_ID="); ok {
				exec = v
			}
		}
		if !mine || !alive(pid) {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		found[pid] = [2]string{strings.TrimSpace(string(comm)), exec}
	}
	return found
}

// serverProcs counts the live server.sh processes per executor.
func serverProcs(out string) map[string][]int {
	m := map[string][]int{}
	for pid, pe := range executorProcs(out) {
		if pe[0] == "server.sh" {
			m[pe[1]] = append(m[pe[1]], pid)
		}
	}
	return m
}

// sweepExecutors fails the test when an executor ran as two processes at
// once (server.sh reports that itself), or outlived the cluster (and kills
// it).
func sweepExecutors(t *testing.T, out string) {
	t.Helper()
	for _, ev := range readEvents(t, out) {
		if ev.kind == "overlap" {
			t.Errorf("executor %s started as pid %d while its earlier process %s was still alive", ev.exec, ev.pid, ev.extra)
		}
	}
	left := executorProcs(out)
	for pid, pe := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !t.Failed() {
			t.Errorf("executor process %d (%s of %s) outlived its worker; killed it", pid, pe[0], pe[1])
		}
	}
}

// startCount is how many times executor id started.
func startCount(out, id string) int {
	b, _ := os.ReadFile(filepath.Join(out, id+".starts"))
	return strings.Count(string(b), "\n")
}

// event is one line of GEAR_TEST_OUT/events.
type event struct {
	kind, exec string
	pid        int
	at         time.Time
	extra      string
}

func (ev event) String() string {
	return fmt.Sprintf("%s %s pid %d at %s %s", ev.kind, ev.exec, ev.pid, ev.at.Format("15:04:05.000"), ev.extra)
}

// serving counts the processes that started and have not seen SIGTERM.
func serving(evs []event) int {
	n := 0
	for _, ev := range evs {
		switch ev.kind {
		case "start":
			n++
		case "term":
			n--
		}
	}
	return n
}

func readEvents(t *testing.T, out string) []event {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "events"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			t.Fatalf("bad event line %q", sc.Text())
		}
		pid, _ := strconv.Atoi(fs[2])
		ns, err := strconv.ParseInt(fs[3], 10, 64)
		if err != nil {
			t.Fatalf("bad event time in %q", sc.Text())
		}
		ev := event{kind: fs[0], exec: fs[1], pid: pid, at: time.Unix(0, ns)}
		if len(fs) > 4 {
			ev.extra = fs[4]
		}
		evs = append(evs, ev)
	}
	return evs
}

func findEvent(evs []event, kind, exec string, pid int) (event, bool) {
	for _, ev := range evs {
		if ev.kind == kind && ev.exec == exec && (pid == 0 || ev.pid == pid) {
			return ev, true
		}
	}
	return event{}, false
}

// Two pinned instances on a two-core worker get one core each, different
// ones, as `app info` says; an executor killed with SIGKILL comes back with
// a new PID on the same core and a higher restart count.
func TestExecutorPinning(t *testing.T) {
	needCores(t, 2)
	c, out := workerCluster(t, "")
	id := c.submit(testBundle(t, out, "pinned", `command = ["./server.sh"]`, "instances = 2", "cpus = 1"))
	a := c.waitRunning(id, 2, 30*time.Second)

	t.Run("each executor on its own core", func(t *testing.T) {
		seen := map[int]string{}
		for _, e := range a.Executors {
			if len(e.CPUs) != 1 {
				t.Fatalf("executor %s has cpus %v in app info, want exactly one", e.ID, e.CPUs)
			}
			got := cpusAllowed(t, e.PID)
			if !slices.Equal(got, e.CPUs) {
				t.Errorf("executor %s (pid %d): Cpus_allowed_list %v, app info says %v", e.ID, e.PID, got, e.CPUs)
			}
			if other, ok := seen[e.CPUs[0]]; ok {
				t.Errorf("executors %s and %s share core %d", other, e.ID, e.CPUs[0])
			}
			seen[e.CPUs[0]] = e.ID
		}
	})

	t.Run("kill -9 restarts on the same core", func(t *testing.T) {
		victim, other := a.Executors[0], a.Executors[1]
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var b *cluster.App
		waitFor(t, 30*time.Second, "executor "+victim.ID+" back with a new PID", func() bool {
			b = c.appInfo(id)
			pids := runningPIDs(b)
			np := pids[victim.ID]
			return np != 0 && np != victim.PID && alive(np)
		})
		e := b.Executors[0]
		if e.Restarts <= victim.Restarts {
			// The restart count may trail the PID by one heartbeat.
			waitFor(t, 10*time.Second, "the restart count to increase", func() bool {
				b = c.appInfo(id)
				return b != nil && b.Executors[0].Restarts > victim.Restarts
			})
			e = b.Executors[0]
		}
		if !slices.Equal(e.CPUs, victim.CPUs) {
			t.Errorf("restarted executor has cpus %v in app info, had %v", e.CPUs, victim.CPUs)
		}
		if got := cpusAllowed(t, e.PID); !slices.Equal(got, victim.CPUs) {
			t.Errorf("restarted executor (pid %d) may run on %v, want %v", e.PID, got, victim.CPUs)
		}
		if e.LastExit == "" {
			t.Errorf("restarted executor has no last_exit")
		}
		if b.Executors[1].PID != other.PID {
			t.Errorf("the other executor changed PID %d -> %d", other.PID, b.Executors[1].PID)
		}
		// The new process appends its start line after its exec, which on a
		// loaded machine may trail the PID the worker reported.
		waitFor(t, 10*time.Second, victim.ID+" to have started exactly twice", func() bool { return startCount(out, victim.ID) == 2 })
	})
	c.killApp(id, pidsOf(c.appInfo(id)))
}

// A program that exits at once is given up on after max-restarts: FAILED,
// with its last exit status, and it is not started again.
func TestCrashLoopFails(t *testing.T) {
	c, out := workerCluster(t, "")
	id := c.submit(testBundle(t, out, "crasher", `command = ["./crash.sh"]`, `restart = "always"`,
		"max-restarts = 2", "restart-window = 30s", "min-uptime = 2s"))
	eid := id + ".main.0"
	var a *cluster.App
	waitFor(t, 40*time.Second, "app "+id+" FAILED", func() bool {
		a = c.appInfo(id)
		return a != nil && a.State == cluster.AppFailed
	})
	e := a.Executors[0]
	if e.State != cluster.Failed {
		t.Errorf("executor state %s, want FAILED", e.State)
	}
	if !strings.Contains(e.LastExit, "status 3") {
		t.Errorf("last_exit %q, want the exit status 3", e.LastExit)
	}
	if e.PID != 0 {
		t.Errorf("a FAILED executor reports pid %d, want 0", e.PID)
	}
	starts := startCount(out, eid)
	if starts != 3 {
		// max-restarts = 2: the first run and two restarts.
		t.Errorf("crash.sh ran %d times, want 3", starts)
	}
	holdFor(t, 2*time.Second, "the executor to stay FAILED", func() error {
		b := c.appInfo(id)
		if b == nil {
			return nil
		}
		be := b.Executors[0]
		if b.State != cluster.AppFailed || be.State != cluster.Failed || be.PID != 0 || be.Restarts != e.Restarts {
			return fmt.Errorf("app %s, executor %s pid %d restarts %d (was %d)", b.State, be.State, be.PID, be.Restarts, e.Restarts)
		}
		return nil
	})
	if n := startCount(out, eid); n != starts {
		t.Fatalf("crash.sh was started again after FAILED: %d runs, was %d", n, starts)
	}
	c.killApp(id, nil)
}

// `gear app kill` stops gracefully: the pre-stop hook runs to its end
// before SIGTERM, and a program that ignores SIGTERM is SIGKILLed once the
// stop timeout has passed, not before.
func TestGracefulStop(t *testing.T) {
	c, out := workerCluster(t, "")
	cases := []struct {
		name        string
		manifest    []string
		stopTimeout time.Duration
		ignoreTerm  bool
	}{
		{
			name:        "SIGTERM ignored: SIGKILL after stop-timeout",
			manifest:    []string{`env { IGNORE_TERM = "1" }`}, // merged with testBundle's env block
			stopTimeout: 3 * time.Second,
			ignoreTerm:  true,
		},
		{
			name:        "pre-stop hook before SIGTERM",
			manifest:    []string{`pre-stop = ["./hook.sh"]`},
			stopTimeout: 5 * time.Second,
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := append([]string{`command = ["./server.sh"]`, fmt.Sprintf("stop-timeout = %dms", tc.stopTimeout.Milliseconds())}, tc.manifest...)
			id := c.submit(testBundle(t, out, fmt.Sprintf("stop%d", i), lines...))
			a := c.waitRunning(id, 1, 30*time.Second)
			e := a.Executors[0]
			killed := time.Now()
			c.mustGear("app", "kill", id)
			// Poll the process itself, finely, to see when it goes.
			var gone time.Time
			waitForFine(t, tc.stopTimeout+20*time.Second, "executor pid to exit", func() bool {
				if alive(e.PID) {
					return false
				}
				gone = time.Now()
				return true
			})
			evs := readEvents(t, out)
			term, ok := findEvent(evs, "term", e.ID, e.PID)
			if !ok {
				t.Fatalf("the program never saw SIGTERM; events: %+v", evs)
			}
			// term.at is when the trap's `date` ran: after the signal, by
			// up to a fork and exec (longer on a loaded machine).
			lived := gone.Sub(term.at)
			const slack = 100 * time.Millisecond
			if tc.ignoreTerm {
				if d := gone.Sub(killed); d < tc.stopTimeout {
					t.Errorf("gone %v after `app kill`, before the stop timeout %v", d, tc.stopTimeout)
				}
				if lived < tc.stopTimeout-time.Second {
					t.Errorf("killed %v after SIGTERM, well before the stop timeout %v", lived, tc.stopTimeout)
				}
				if lived > tc.stopTimeout+10*time.Second {
					t.Errorf("still alive %v after SIGTERM, stop timeout %v", lived, tc.stopTimeout)
				}
				t.Logf("SIGKILL came %v after SIGTERM (stop-timeout %v)", lived.Round(time.Millisecond), tc.stopTimeout)
			} else {
				hook, ok := findEvent(evs, "hook", e.ID, 0)
				if !ok {
					t.Fatalf("the pre-stop hook did not run; events: %+v", evs)
				}
				if term.extra != "hook-done" {
					t.Errorf("SIGTERM came before the pre-stop hook finished (%s)", term.extra)
				}
				// The hook's `date` ran before its `sleep 1`, so the gap is
				// at least a second.
				if d := term.at.Sub(hook.at); d < time.Second-slack {
					t.Errorf("SIGTERM %v after the hook started; the hook takes 1s", d)
				}
				if lived > tc.stopTimeout {
					t.Errorf("a program that exits on SIGTERM took %v to go", lived)
				}
			}
			waitFor(t, 20*time.Second, "app "+id+" KILLED", func() bool {
				b := c.appInfo(id)
				return b != nil && b.State == cluster.AppKilled
			})
		})
	}
}

// holdFor checks that an invariant holds for d, every 100ms: for things
// that must NOT happen (a restart after FAILED, a second copy), which can
// only be watched for a while.
func holdFor(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// waitForFine is waitFor with a 20ms poll, for timing measurements.
func waitForFine(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// `gear app scale` starts and stops executors; the ones removed are gone
// and the ones kept are not touched.
func TestScale(t *testing.T) {
	c, out := workerCluster(t, "")
	id := c.submit(testBundle(t, out, "scaled", `command = ["./server.sh"]`, "instances = 1", "stop-timeout = 2s"))
	first := c.waitRunning(id, 1, 30*time.Second).Executors[0]

	c.mustGear("app", "scale", id, "3")
	up := c.waitRunning(id, 3, 30*time.Second)
	if up.Executors[0].PID != first.PID {
		t.Errorf("scaling up restarted executor 0: pid %d -> %d", first.PID, up.Executors[0].PID)
	}
	seen := map[int]bool{}
	for _, e := range up.Executors {
		if seen[e.PID] {
			t.Fatalf("two executors report pid %d", e.PID)
		}
		seen[e.PID] = true
	}
	if got := serverProcs(out); len(got) != 3 {
		t.Errorf("%d executors have processes, want 3: %v", len(got), got)
	}

	c.mustGear("app", "scale", id, "1")
	down := c.waitRunning(id, 1, 30*time.Second)
	if down.Executors[0].ID != first.ID || down.Executors[0].PID != first.PID {
		t.Errorf("after scaling down: executor %s pid %d, want %s pid %d", down.Executors[0].ID, down.Executors[0].PID, first.ID, first.PID)
	}
	removed := []int{up.Executors[1].PID, up.Executors[2].PID}
	waitFor(t, 20*time.Second, "the removed executors' processes to exit", func() bool {
		return !slices.ContainsFunc(removed, alive)
	})
	if got := serverProcs(out); len(got) != 1 || len(got[first.ID]) != 1 {
		t.Errorf("after scaling down the processes are %v, want one for %s", got, first.ID)
	}
	c.killApp(id, []int{first.PID})
}

// `gear app restart` replaces every executor, one at a time: at every
// sample at least N-1 executors are RUNNING, and no two executors are down
// (between the old process's SIGTERM and the new one's start) at once.
func TestRollingRestart(t *testing.T) {
	const n = 3
	c, out := workerCluster(t, "")
	id := c.submit(testBundle(t, out, "rolling", `command = ["./server.sh"]`, fmt.Sprintf("instances = %d", n), "stop-timeout = 5s"))
	before := c.waitRunning(id, n, 30*time.Second)
	old := map[string]int{}
	for _, e := range before.Executors {
		old[e.ID] = e.PID
	}

	c.mustGear("app", "restart", id)
	samples, minRunning := 0, n
	deadline := time.Now().Add(45 * time.Second)
	for {
		a := c.appInfo(id)
		if a != nil {
			samples++
			running, replaced := 0, 0
			for _, e := range a.Executors {
				if e.State == cluster.Running {
					running++
				}
				if e.State == cluster.Running && e.PID != 0 && e.PID != old[e.ID] && e.Observed == a.Generation {
					replaced++
				}
			}
			minRunning = min(minRunning, running)
			if running < n-1 {
				t.Errorf("sample %d: only %d of %d executors RUNNING: %+v", samples, running, n, a.Executors)
			}
			// The same from the processes' side: started and not yet told to stop.
			if s := serving(readEvents(t, out)); s < n-1 {
				t.Errorf("sample %d: only %d of %d processes serving", samples, s, n)
			}
			if replaced == n {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rolling restart did not replace all %d executors in 45s: %+v", n, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d samples, at least %d of %d RUNNING in each", samples, minRunning, n)

	// Each executor's down time: from its old process's SIGTERM to its new
	// process's start. No two may overlap.
	// A new process writes its start line after its exec, which on a
	// loaded machine may trail the PID the worker reported: wait for them.
	after := c.appInfo(id)
	var evs []event
	waitFor(t, 10*time.Second, "the new processes' start lines", func() bool {
		evs = readEvents(t, out)
		for _, e := range after.Executors {
			if _, ok := findEvent(evs, "start", e.ID, e.PID); !ok {
				return false
			}
		}
		return true
	})
	type span struct{ from, to time.Time }
	var downs []span
	for _, e := range after.Executors {
		term, ok := findEvent(evs, "term", e.ID, old[e.ID])
		if !ok {
			t.Fatalf("old process %d of %s never got SIGTERM: %+v", old[e.ID], e.ID, evs)
		}
		start, ok := findEvent(evs, "start", e.ID, e.PID)
		if !ok {
			t.Fatalf("no start event for the new process %d of %s", e.PID, e.ID)
		}
		if alive(old[e.ID]) {
			t.Errorf("old process %d of %s still runs", old[e.ID], e.ID)
		}
		downs = append(downs, span{term.at, start.at})
	}
	slices.SortFunc(downs, func(a, b span) int { return a.from.Compare(b.from) })
	for i := 1; i < len(downs); i++ {
		if downs[i].from.Before(downs[i-1].to) {
			t.Errorf("two executors were down at once: %v-%v and %v-%v", downs[i-1].from, downs[i-1].to, downs[i].from, downs[i].to)
		}
	}
	c.killApp(id, pidsOf(after))
}

// workerView asks the worker itself (not the masters) what it runs.
func workerView(t *testing.T, addr string) (cluster.Heartbeat, error) {
	t.Helper()
	var hb cluster.Heartbeat
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/api/v1/executors")
	if err != nil {
		return hb, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hb, fmt.Errorf("GET /api/v1/executors: %s", resp.Status)
	}
	return hb, json.NewDecoder(resp.Body).Decode(&hb)
}

// A worker that goes away without stopping its executors (kill -9, or
// SIGTERM with on-exit = leave) leaves them running; started again on the
// same data dir it adopts them (same PIDs and cores, nothing started twice),
// and `app kill` then stops them all. An app killed while its worker is
// down has its orphans stopped when the worker comes back.
func TestWorkerRestartAdopts(t *testing.T) {
	needCores(t, 2)
	cases := []struct {
		name         string
		conf         string
		sig          syscall.Signal
		killWhenDown bool
	}{
		{name: "kill -9", sig: syscall.SIGKILL},
		{name: "SIGTERM with on-exit=leave", conf: "gear.worker.on-exit = \"leave\"\n", sig: syscall.SIGTERM},
		{name: "app killed while the worker is down", sig: syscall.SIGKILL, killWhenDown: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A generous failover timeout: the worker is back long before
			// the masters would reschedule its executors.
			c, out := workerCluster(t, "gear.failover.timeout = 10s\n"+tc.conf)
			id := c.submit(testBundle(t, out, "adopted", `command = ["./server.sh"]`, "instances = 2", "cpus = 1", "stop-timeout = 2s"))
			before := c.waitRunning(id, 2, 30*time.Second)
			oldBoot := c.aliveWorkers()[0].BootID

			c.kill("worker0", tc.sig) // waits for the worker to exit
			for _, e := range before.Executors {
				if !alive(e.PID) {
					t.Fatalf("executor %s (pid %d) died with its worker", e.ID, e.PID)
				}
			}
			if tc.killWhenDown {
				c.mustGear("app", "kill", id)
			}
			c.startWorker(0)
			var w cluster.Worker
			waitFor(t, 20*time.Second, "the restarted worker to register", func() bool {
				ws := c.aliveWorkers()
				if len(ws) == 1 && ws[0].BootID != oldBoot {
					w = ws[0]
					return true
				}
				return false
			})
			if tc.killWhenDown {
				waitFor(t, 20*time.Second, "the orphans of the killed app to be stopped", func() bool {
					return !slices.ContainsFunc(pidsOf(before), alive)
				})
				waitFor(t, 20*time.Second, "app "+id+" KILLED with every executor STOPPED", func() bool {
					a := c.appInfo(id)
					return a != nil && a.State == cluster.AppKilled &&
						!slices.ContainsFunc(a.Executors, func(e cluster.Executor) bool { return e.State != cluster.Stopped })
				})
				for _, e := range before.Executors {
					if n := startCount(out, e.ID); n != 1 {
						t.Errorf("executor %s of the killed app was started %d times", e.ID, n)
					}
				}
				return
			}
			// Ask the new worker process what it runs: same PIDs, RUNNING,
			// same cores.
			waitFor(t, 20*time.Second, "the restarted worker to report both executors RUNNING", func() bool {
				hb, err := workerView(t, w.Addr)
				if err != nil || hb.Worker.BootID != w.BootID || len(hb.Executors) != 2 {
					return false
				}
				return !slices.ContainsFunc(hb.Executors, func(r cluster.ExecutorReport) bool { return r.State != cluster.Running })
			})
			hb, err := workerView(t, w.Addr)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range hb.Executors {
				e := before.Executors[i]
				if r.ID != e.ID || r.PID != e.PID {
					t.Errorf("after the worker restart %s runs as pid %d, want the adopted pid %d of %s", r.ID, r.PID, e.PID, e.ID)
				}
				if !slices.Equal(r.CPUs, e.CPUs) {
					t.Errorf("adopted %s reports cpus %v, had %v", r.ID, r.CPUs, e.CPUs)
				}
			}
			after := c.waitRunning(id, 2, 20*time.Second)
			for i, e := range after.Executors {
				if e.PID != before.Executors[i].PID {
					t.Errorf("app info: %s pid %d, want %d", e.ID, e.PID, before.Executors[i].PID)
				}
			}
			holdFor(t, 2*time.Second, "one process per executor, the adopted one", func() error {
				byExec := serverProcs(out)
				for _, e := range before.Executors {
					if got := byExec[e.ID]; len(got) != 1 || got[0] != e.PID {
						return fmt.Errorf("executor %s has processes %v, want only %d", e.ID, got, e.PID)
					}
					if n := startCount(out, e.ID); n != 1 {
						return fmt.Errorf("executor %s was started %d times", e.ID, n)
					}
				}
				return nil
			})
			c.killApp(id, pidsOf(before))
			if left := executorProcs(out); len(left) != 0 {
				t.Fatalf("processes left after app kill: %v", left)
			}
		})
	}
}

// A worker told to stop (SIGTERM, default on-exit = stop) stops its
// executors gracefully before it exits.
func TestWorkerSIGTERMStopsExecutors(t *testing.T) {
	c, out := workerCluster(t, "")
	id := c.submit(testBundle(t, out, "stopped", `command = ["./server.sh"]`, "instances = 2", "stop-timeout = 5s"))
	a := c.waitRunning(id, 2, 30*time.Second)

	c.kill("worker0", syscall.SIGTERM) // waits for the worker to exit
	for _, e := range a.Executors {
		if alive(e.PID) {
			t.Errorf("executor %s (pid %d) outlived its worker's SIGTERM", e.ID, e.PID)
		}
	}
	evs := readEvents(t, out)
	for _, e := range a.Executors {
		if _, ok := findEvent(evs, "term", e.ID, e.PID); !ok {
			t.Errorf("executor %s was not stopped with SIGTERM (graceful); events: %+v", e.ID, evs)
		}
	}
	if left := executorProcs(out); len(left) != 0 {
		t.Errorf("processes left after the worker exited: %v", left)
	}
}

// Scaling down and straight back up reuses executor ids while the removed
// processes may still be stopping: every id must end with exactly one
// live process, the one app info reports.
func TestScaleDownUpQuickly(t *testing.T) {
	c, out := workerCluster(t, "")
	id := c.submit(testBundle(t, out, "bounce", `command = ["./server.sh"]`, "instances = 3", "stop-timeout = 3s", `env { IGNORE_TERM = "1" }`))
	c.waitRunning(id, 3, 30*time.Second)
	c.mustGear("app", "scale", id, "1")
	c.mustGear("app", "scale", id, "3")
	var a *cluster.App
	waitFor(t, 40*time.Second, "three executors, one live process each, matching app info", func() bool {
		a = c.appInfo(id)
		pids := runningPIDs(a)
		if len(pids) != 3 {
			return false
		}
		byExec := serverProcs(out)
		for eid, pid := range pids {
			if got := byExec[eid]; len(got) != 1 || got[0] != pid {
				return false
			}
		}
		return len(byExec) == 3
	})
	holdFor(t, 2*time.Second, "one process per executor, as app info says", func() error {
		b := c.appInfo(id)
		if b == nil {
			return nil
		}
		pids := runningPIDs(b)
		byExec := serverProcs(out)
		for _, e := range a.Executors {
			if pids[e.ID] != e.PID || len(byExec[e.ID]) != 1 {
				return fmt.Errorf("executor %s: app info pid %d (was %d), processes %v", e.ID, pids[e.ID], e.PID, byExec[e.ID])
			}
		}
		return nil
	})
	for _, e := range a.Executors {
		if _, err := os.Stat(filepath.Join(c.dir, "worker0", "pids", e.ID+".pid")); err != nil {
			t.Errorf("executor %s runs without its pid file (a worker restart could not adopt it): %v", e.ID, err)
		}
	}
	c.killApp(id, pidsOf(a))
}

// A worker that stays down past the failover timeout has its executors
// marked LOST (there is no other worker to move them to). When it comes
// back, the leader places them again; whether the worker adopts the
// processes that kept running or replaces them, no executor may ever run
// as two processes at once, even one slow to stop (it ignores SIGTERM
// here), and each ends on the cores app info reports.
func TestWorkerBackAfterTimeout(t *testing.T) {
	needCores(t, 2)
	c, out := workerCluster(t, "gear.failover.timeout = 3s\n")
	id := c.submit(testBundle(t, out, "lost", `command = ["./server.sh"]`, "instances = 2", "cpus = 1",
		"stop-timeout = 3s", `env { IGNORE_TERM = "1" }`))
	before := c.waitRunning(id, 2, 30*time.Second)

	c.kill("worker0", syscall.SIGKILL)
	waitFor(t, 30*time.Second, "the executors of the dead worker to be LOST", func() bool {
		a := c.appInfo(id)
		return a != nil && !slices.ContainsFunc(a.Executors, func(e cluster.Executor) bool { return e.State != cluster.Lost })
	})
	c.startWorker(0)
	after := waitOneProcessEach(t, c, out, id, 2)
	for i, e := range after.Executors {
		if got := cpusAllowed(t, e.PID); !slices.Equal(got, e.CPUs) {
			t.Errorf("%s (pid %d) may run on %v, app info says %v", e.ID, e.PID, got, e.CPUs)
		}
		t.Logf("%s: pid %d before, %d after (adopted: %t)", e.ID, before.Executors[i].PID, e.PID, e.PID == before.Executors[i].PID)
	}
	c.killApp(id, pidsOf(after))
}

// A worker cut off from the leader past stop-after-disconnect fences: it
// stops its executors. When contact comes back while one of them is still
// stopping (it ignores SIGTERM), the leader's assignments must not start a
// second copy next to it. The master is frozen with SIGSTOP to cut the
// worker off (connections hang rather than being refused).
func TestFenceThenReconnect(t *testing.T) {
	c, out := workerCluster(t, "gear.failover.timeout = 4s\n")
	id := c.submit(testBundle(t, out, "fenced", `command = ["./server.sh"]`, "instances = 2",
		"stop-timeout = 10s", `env { IGNORE_TERM = "1" }`))
	c.waitRunning(id, 2, 30*time.Second)

	c.kill("master0", syscall.SIGSTOP)
	resumed := false
	defer func() {
		if !resumed {
			c.kill("master0", syscall.SIGCONT)
		}
	}()
	waitFor(t, 20*time.Second, "the worker to fence", func() bool {
		return strings.Contains(readFile(t, c.procs["worker0"].log), "no contact with a leader: stopping every executor")
	})
	c.kill("master0", syscall.SIGCONT)
	resumed = true
	waitOneProcessEach(t, c, out, id, 2)
	c.killApp(id, pidsOf(c.appInfo(id)))
}

// waitOneProcessEach waits until app id runs n executors again, each as
// exactly the one process the app reports, and fails the test if any
// executor was seen running as two processes at once meanwhile.
func waitOneProcessEach(t *testing.T, c *testCluster, out, id string, n int) *cluster.App {
	t.Helper()
	var after *cluster.App
	twice := map[string][]int{}
	waitFor(t, 40*time.Second, "app RUNNING again, one process per executor", func() bool {
		byExec := serverProcs(out)
		for eid, pids := range byExec {
			if len(pids) > 1 && twice[eid] == nil {
				twice[eid] = pids
			}
		}
		after = c.appInfo(id)
		pids := runningPIDs(after)
		if len(pids) != n {
			return false
		}
		for eid, pid := range pids {
			if got := byExec[eid]; len(got) != 1 || got[0] != pid {
				return false
			}
		}
		return true
	})
	for eid, pids := range twice {
		t.Errorf("executor %s ran as two processes at once: %v", eid, pids)
	}
	return after
}
