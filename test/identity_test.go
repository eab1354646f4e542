package test

// Worker identity and request limits (issue 11, findings 6 and 7): forged
// heartbeats get nothing and change nothing, dead workers can be removed
// and are forgotten, and oversized or trailing-garbage request bodies are
// refused through any master.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// postJSON posts body to a master and returns the status and answer.
// postBody POSTs body (of the given length, -1 = unknown: streamed) to
// master's path and returns the status and the raw answer.
func postBody(t *testing.T, master, path string, body io.Reader, length int64) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+master+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s%s: %v", master, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func heartbeat(t *testing.T, master string, hb cluster.Heartbeat) (int, string) {
	t.Helper()
	b, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	return postBody(t, master, "/api/v1/workers/heartbeat", bytes.NewReader(b), int64(len(b)))
}

func (c *testCluster) workersJSON() []cluster.Worker {
	c.t.Helper()
	out, errOut, code := c.gear("workers", "-json")
	if code != 0 {
		c.t.Logf("workers -json: exit %d: %s", code, errOut)
		return nil
	}
	var ws []cluster.Worker
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		c.t.Fatalf("workers -json: %v\n%s", err, out)
	}
	return ws
}

func findWorker(ws []cluster.Worker, id string) *cluster.Worker {
	for i := range ws {
		if ws[i].ID == id {
			return &ws[i]
		}
	}
	return nil
}

// A worker that exists only as HTTP heartbeats ("evil", claiming 8 cores)
// gets no executor, and a heartbeat under a real worker's id without its
// secret is refused and changes nothing.
func TestForgedHeartbeats(t *testing.T) {
	c, out := workerCluster(t, "")
	leader := c.masters[0]
	var real cluster.Worker
	waitFor(t, 20*time.Second, "the real worker alive in the gossip pool", func() bool {
		ws := c.aliveWorkers()
		if len(ws) != 1 {
			return false
		}
		real = ws[0]
		return real.Gossip == "alive"
	})

	// evil heartbeats every 200ms until the end of the test.
	evil := cluster.Heartbeat{
		Worker: cluster.Worker{ID: "evil", Addr: "127.0.0.1:9", CPUs: []int{0, 1, 2, 3, 4, 5, 6, 7}, BootID: "evil-boot"},
		Secret: "evil-secret",
	}
	var mu sync.Mutex
	var evilAnswers []string
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		b, _ := json.Marshal(evil)
		for {
			resp, err := http.Post("http://"+leader+"/api/v1/workers/heartbeat", "application/json", bytes.NewReader(b))
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				evilAnswers = append(evilAnswers, fmt.Sprintf("%d %s", resp.StatusCode, body))
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-stopped }()
	waitFor(t, 20*time.Second, "evil to be listed as an alive worker", func() bool {
		w := findWorker(c.workersJSON(), "evil")
		return w != nil && w.Alive
	})
	if w := findWorker(c.workersJSON(), "evil"); w.Gossip != "" {
		t.Fatalf("evil shows gossip state %q, want none (it never joined the pool)", w.Gossip)
	}

	// One pinned executor more than the real worker has cores: the last
	// one must wait for room, not go to evil's 8 claimed cores.
	n := len(real.CPUs) + 1
	id := c.submit(testBundle(t, out, "pinned", `command = ["./server.sh"]`, fmt.Sprintf("instances = %d", n), "cpus = 1"))
	var app *cluster.App
	waitFor(t, 40*time.Second, fmt.Sprintf("%d executors running on %s and one waiting for room", n-1, real.ID), func() bool {
		app = c.appInfo(id)
		if app == nil || len(app.Executors) != n {
			return false
		}
		running, waiting := 0, 0
		for _, e := range app.Executors {
			if e.Worker == "evil" {
				t.Fatalf("executor %s was placed on the forged worker evil: %+v", e.ID, e)
			}
			if e.Worker == real.ID && e.State == cluster.Running && e.PID > 0 {
				running++
			}
			if e.Worker == "" && strings.Contains(e.LastError, "free core") {
				waiting++
			}
		}
		return running == n-1 && waiting == 1
	})
	if w := findWorker(c.workersJSON(), "evil"); w == nil || !w.Alive {
		t.Fatalf("evil was not alive while the executors were placed, so the test proves nothing: %+v", w)
	}
	mu.Lock()
	for _, a := range evilAnswers {
		if !strings.HasPrefix(a, "200 ") || strings.Contains(a, `"executor"`) {
			t.Errorf("evil's heartbeat got %s, want 200 without assignments", a)
		}
	}
	mu.Unlock()

	// A heartbeat under the real worker's id, reporting its first executor
	// FAILED as pid 1. The real worker is stopped meanwhile, so it cannot
	// repair what a fold would have changed before we look.
	var target cluster.Executor
	for _, e := range app.Executors {
		if e.Worker == real.ID {
			target = e
			break
		}
	}
	name := workerName(t, c, real.ID, 1)
	c.kill(name, syscall.SIGSTOP)
	t.Cleanup(func() { c.kill(name, syscall.SIGCONT) })
	forged := cluster.Heartbeat{
		Worker:    cluster.Worker{ID: real.ID, Addr: "127.0.0.1:9", CPUs: real.CPUs, BootID: "forged"},
		Executors: []cluster.ExecutorReport{{ID: target.ID, PID: 1, State: cluster.Failed, LastError: "forged"}},
	}
	for _, tc := range []struct {
		secret string
		status int
		want   []string
	}{
		{"wrong-secret", http.StatusForbidden, []string{"registered with another secret", "gear workers remove " + real.ID}},
		{"", http.StatusBadRequest, []string{"without a worker secret"}},
	} {
		forged.Secret = tc.secret
		status, body := heartbeat(t, leader, forged)
		if status != tc.status {
			t.Fatalf("forged heartbeat with secret %q: %d %s, want %d", tc.secret, status, body, tc.status)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("forged heartbeat with secret %q: answer %s does not say %q", tc.secret, body, w)
			}
		}
		if strings.Contains(body, "assignments") || strings.Contains(body, target.ID) {
			t.Fatalf("a refused heartbeat got assignments back: %s", body)
		}
	}
	after := c.appInfo(id)
	for _, e := range after.Executors {
		if e.ID == target.ID && (e.State != cluster.Running || e.PID != target.PID || e.LastError != "") {
			t.Fatalf("a refused heartbeat changed executor %s: %+v, was %+v", e.ID, e, target)
		}
	}
	w := findWorker(c.workersJSON(), real.ID)
	if w == nil || w.Addr != real.Addr || w.BootID != real.BootID {
		t.Fatalf("a refused heartbeat changed the worker: %+v, was %+v", w, real)
	}
	if log := readFile(t, c.procs["master0"].log); !strings.Contains(log, "refused a heartbeat") {
		t.Error("the master did not log the refused heartbeat")
	}
	resumed := time.Now()
	c.kill(name, syscall.SIGCONT)
	// The real worker carries on with its own secret.
	waitFor(t, 20*time.Second, "the real worker to heartbeat again", func() bool {
		w := findWorker(c.workersJSON(), real.ID)
		return w != nil && w.Alive && w.LastSeen.After(resumed)
	})
	if a := c.appInfo(id); a == nil || !slices.ContainsFunc(a.Executors, func(e cluster.Executor) bool {
		return e.ID == target.ID && e.PID == target.PID && e.State == cluster.Running
	}) {
		t.Fatalf("executor %s did not keep running as pid %d: %+v", target.ID, target.PID, a)
	}
	c.killApp(id, pidsOf(after))
}

// `gear workers remove`: refused for a worker heard from within the
// failover timeout (unless -force), done for a dead one; its executors are
// placed elsewhere. A worker silent for gear.worker.forget-after is
// forgotten by itself.
func TestWorkersRemoveAndForget(t *testing.T) {
	out := t.TempDir()
	t.Cleanup(func() { sweepExecutors(t, out) })
	c := newCluster(t, clusterOpts{masters: 1, workers: 4, conf: "gear.worker.forget-after = 10s\n"})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	waitFor(t, 30*time.Second, "4 workers alive, also in the gossip pool", func() bool {
		n := 0
		for _, w := range c.workersJSON() {
			if w.Alive && w.Gossip == "alive" {
				n++
			}
		}
		return n == 4
	})
	names := map[string]string{} // harness name -> worker id
	for _, w := range c.workersJSON() {
		names[workerName(t, c, w.ID, 4)] = w.ID
	}
	id := c.submit(testBundle(t, out, "spread", `command = ["./server.sh"]`, "instances = 4", "cpus = 0"))
	app := c.waitRunning(id, 4, 40*time.Second)
	on := func(a *cluster.App, worker string) *cluster.Executor {
		for i := range a.Executors {
			if a.Executors[i].Worker == worker {
				return &a.Executors[i]
			}
		}
		return nil
	}

	// worker3 goes away for good (its executor is stopped with it); it is
	// forgotten 10s after its last heartbeat.
	c.kill("worker3", syscall.SIGTERM)

	// A live worker is not removed.
	_, errOut, code := c.gear("workers", "remove", names["worker0"])
	if code == 0 || !strings.Contains(errOut, "-force") || !strings.Contains(errOut, "heard from") {
		t.Fatalf("removing a live worker: exit %d, stderr %q; want a refusal that mentions -force", code, errOut)
	}
	if findWorker(c.workersJSON(), names["worker0"]) == nil {
		t.Fatal("a refused removal removed the worker")
	}

	// worker1 dies with its executor (kill -9 of both). Within the
	// failover timeout it is refused without -force, removed with it, and
	// its executor is placed on another worker at once.
	e1 := on(app, names["worker1"])
	if e1 == nil {
		t.Fatalf("no executor on worker1: %+v", app.Executors)
	}
	c.kill("worker1", syscall.SIGKILL)
	_ = syscall.Kill(-e1.PID, syscall.SIGKILL)
	_ = syscall.Kill(e1.PID, syscall.SIGKILL)
	if _, errOut, code := c.gear("workers", "remove", names["worker1"]); code == 0 || !strings.Contains(errOut, "-force") {
		t.Fatalf("removing a worker heard from moments ago: exit %d, stderr %q; want a refusal", code, errOut)
	}
	stdout := c.mustGear("workers", "remove", names["worker1"], "-force", "-json")
	var res cluster.RemoveWorkerResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("workers remove -json: %v\n%s", err, stdout)
	}
	if res.ID != names["worker1"] || !slices.Contains(res.Unplaced, e1.ID) {
		t.Fatalf("workers remove answered %+v, want worker1 with its executor %s unplaced", res, e1.ID)
	}
	if findWorker(c.workersJSON(), names["worker1"]) != nil {
		t.Fatal("worker1 is still listed after workers remove")
	}
	waitFor(t, 30*time.Second, "executor "+e1.ID+" running on another worker", func() bool {
		a := c.appInfo(id)
		for _, e := range a.Executors {
			if e.ID == e1.ID {
				return e.State == cluster.Running && e.Worker != "" && e.Worker != names["worker1"] && e.PID != e1.PID && alive(e.PID)
			}
		}
		return false
	})

	// worker2 stops; once the failover timeout has passed it is removed
	// without -force.
	c.kill("worker2", syscall.SIGTERM)
	waitFor(t, 30*time.Second, "worker2 to count as dead", func() bool {
		w := findWorker(c.workersJSON(), names["worker2"])
		return w != nil && !w.Alive
	})
	if stdout := c.mustGear("workers", "remove", names["worker2"]); !strings.Contains(stdout, "removed worker "+names["worker2"]) {
		t.Fatalf("workers remove printed %q", stdout)
	}
	if _, errOut, code := c.gear("workers", "remove", names["worker2"]); code == 0 || !strings.Contains(errOut, "no such worker") {
		t.Fatalf("removing it again: exit %d, stderr %q; want no such worker", code, errOut)
	}

	// worker3 was never removed: it is forgotten by itself.
	waitFor(t, 40*time.Second, "worker3 to be forgotten after gear.worker.forget-after", func() bool {
		return findWorker(c.workersJSON(), names["worker3"]) == nil
	})
	if log := readFile(t, c.procs["master0"].log); !strings.Contains(log, "forgot workers") {
		t.Error("the master did not log that it forgot worker3")
	}
	a := c.waitRunning(id, 4, 40*time.Second)
	for _, e := range a.Executors {
		if e.Worker != names["worker0"] {
			t.Fatalf("executor %s is on %s; only worker0 is left", e.ID, e.Worker)
		}
	}
	c.killApp(id, pidsOf(a))
}

// Bodies over the limit get 413 naming the limit, from the leader and
// through a follower, declared or streamed; trailing data after the JSON
// value is 400.
func TestRequestBodyLimits(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 0, conf: "gear.jarstore.max-bundle-size = 1KB\n"})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	var follower string
	for _, m := range c.masters {
		if m != leader {
			follower = m
			break
		}
	}
	big := func() []byte {
		var b bytes.Buffer
		b.WriteString(`{"instances":1,"process":"`)
		b.Write(bytes.Repeat([]byte("x"), 50<<20))
		b.WriteString(`"}`)
		return b.Bytes()
	}()
	for _, tc := range []struct {
		name, master string
		chunked      bool
	}{
		{"to the leader", leader, false},
		{"through a follower", follower, false},
		{"streamed to the leader", leader, true},
		{"streamed through a follower", follower, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			length := int64(len(big))
			var body io.Reader = bytes.NewReader(big)
			if tc.chunked {
				length, body = -1, io.MultiReader(body) // hides the length
			}
			status, answer := postBody(t, tc.master, "/api/v1/apps/1/scale", body, length)
			if status != http.StatusRequestEntityTooLarge || !strings.Contains(answer, "request body over 8MiB (the API's limit for JSON requests)") {
				t.Fatalf("50 MB JSON body: %d %s, want 413 naming the 8MiB limit", status, answer)
			}
		})
	}
	t.Run("bundle through a follower", func(t *testing.T) {
		for _, chunked := range []bool{false, true} {
			data := bytes.Repeat([]byte("x"), 4000)
			length := int64(len(data))
			var body io.Reader = bytes.NewReader(data)
			if chunked {
				length, body = -1, io.MultiReader(body)
			}
			status, answer := postBody(t, follower, "/api/v1/bundles?name=big.tar.gz", body, length)
			if status != http.StatusRequestEntityTooLarge || !strings.Contains(answer, "max-bundle-size") {
				t.Fatalf("bundle over the limit (chunked %t): %d %s, want 413 naming gear.jarstore.max-bundle-size", chunked, status, answer)
			}
		}
	})
	for _, m := range []string{leader, follower} {
		status, answer := postBody(t, m, "/api/v1/apps/1/scale", strings.NewReader(`{"instances":1} garbage`), -1)
		if status != http.StatusBadRequest || !strings.Contains(answer, "after the JSON value") {
			t.Fatalf("trailing garbage via %s: %d %s, want 400", m, status, answer)
		}
	}
	// The cluster still works.
	if status, answer := postBody(t, follower, "/api/v1/apps/1/scale", strings.NewReader(`{"instances":1}`), -1); status != http.StatusNotFound {
		t.Fatalf("a good request after the refusals: %d %s, want 404 (no app 1)", status, answer)
	}
}

// A worker killed with -9 and started again (same data dir, so the same id
// and secret, but a new port) gets back into the gossip pool, which still
// held its old address, and so gets executors again.
func TestCrashedWorkerRejoinsPool(t *testing.T) {
	c, out := workerCluster(t, "")
	old := c.aliveWorkers()[0]
	c.kill("worker0", syscall.SIGKILL)
	c.startWorker(0)
	waitFor(t, 20*time.Second, "the restarted worker alive, also in the gossip pool", func() bool {
		w := findWorker(c.workersJSON(), old.ID)
		return w != nil && w.Alive && w.Gossip == "alive" && w.BootID != old.BootID
	})
	id := c.submit(testBundle(t, out, "after-crash", `command = ["./server.sh"]`, "instances = 1"))
	a := c.waitRunning(id, 1, 30*time.Second)
	if a.Executors[0].Worker != old.ID {
		t.Fatalf("executor placed on %q, want the restarted worker %s", a.Executors[0].Worker, old.ID)
	}
	c.killApp(id, pidsOf(a))
}
