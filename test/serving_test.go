package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// loopClient is a closed-loop HTTP client: one request at a time, a new
// connection each, counting successes and each kind of failure.
type loopClient struct {
	url                          string
	ok, refused, reset, otherErr atomic.Int64
	lastErr                      atomic.Value
	stop                         chan struct{}
	done                         chan struct{}
	closeOnce                    sync.Once
}

func startLoopClient(url string) *loopClient {
	lc := &loopClient{url: url, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(lc.done)
		for {
			select {
			case <-lc.stop:
				return
			default:
			}
			resp, err := client.Get(lc.url)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			switch {
			case err == nil:
				lc.ok.Add(1)
			case errors.Is(err, syscall.ECONNREFUSED):
				lc.refused.Add(1)
			case errors.Is(err, syscall.ECONNRESET):
				lc.reset.Add(1)
			default:
				lc.otherErr.Add(1)
			}
			if err != nil {
				lc.lastErr.Store(err.Error())
			}
		}
	}()
	return lc
}

func (lc *loopClient) counts() (ok, refused, reset, other int64) {
	return lc.ok.Load(), lc.refused.Load(), lc.reset.Load(), lc.otherErr.Load()
}

func (lc *loopClient) close() {
	lc.closeOnce.Do(func() { close(lc.stop) })
	<-lc.done
}

var helloOnce sync.Once
var helloBin string

// helloBinary builds the example server (conf/examples/hello) once.
func helloBinary(t *testing.T) string {
	t.Helper()
	helloOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gear-test-hello-")
		if err != nil {
			t.Fatal(err)
		}
		helloBin = filepath.Join(dir, "hello")
		build := exec.Command("go", "build", "-o", helloBin, "./conf/examples/hello")
		build.Dir = repoRoot
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the hello example: %v\n%s", err, out)
		}
	})
	return helloBin
}

// TestListenSharedPortNoRefusals: four instances of the example server on
// one worker accept on one listen port the worker opened. A client
// connecting in a tight loop sees no refused or reset connection during a
// rolling restart (which waits for each new instance's health check),
// during a worker restart that adopts the instances, during a rolling
// restart after that (the new worker took the socket back from an
// instance), and around a kill -9 of one instance loses at most the one
// request that instance held, with no refusal.
func TestListenSharedPortNoRefusals(t *testing.T) {
	c, out := workerCluster(t, "gear.failover.timeout = 10s\ngear.worker.on-exit = \"leave\"\n")
	port := freePort(t, "127.0.0.1")
	bin, err := os.ReadFile(helloBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	manifest := fmt.Sprintf(`name = "web"
processes {
  web {
    command = ["./hello"]
    instances = 4
    listen = [%d]
    stop-timeout = 5s
    env { GEAR_TEST_OUT = %q }
    health { http = "/", body = "hello from", interval = 300ms, timeout = 1s, failures = 3, grace = 5s }
  }
}
`, port, out)
	path := filepath.Join(t.TempDir(), "web.tar.gz")
	writeTarGz(t, path, map[string]string{"gear-app.conf": manifest, "hello": string(bin)})
	id := c.submit(path)
	var last *cluster.App
	t.Cleanup(func() {
		c.gear("app", "kill", id)
		deadline := time.Now().Add(20 * time.Second)
		for last != nil && time.Now().Before(deadline) && slices.ContainsFunc(pidsOf(last), alive) {
			time.Sleep(100 * time.Millisecond)
		}
	})
	healthy := func(what string, gen int, not map[int]bool) *cluster.App {
		t.Helper()
		waitFor(t, 60*time.Second, what, func() bool {
			a := c.appInfo(id)
			if a == nil || len(a.Executors) != 4 {
				return false
			}
			for _, e := range a.Executors {
				if e.State != cluster.Running || e.Health != cluster.HealthPassing || e.Observed < gen || not[e.PID] || !alive(e.PID) {
					return false
				}
			}
			last = a
			return true
		})
		return last
	}
	before := healthy("4 instances RUNNING and passing their health checks", 0, nil)
	if w := before.Executors[0].Worker; slices.ContainsFunc(before.Executors, func(e cluster.Executor) bool { return e.Worker != w }) {
		t.Fatalf("the instances are not all on the one worker: %+v", before.Executors)
	}

	lc := startLoopClient(fmt.Sprintf("http://127.0.0.1:%d/?sleep=5ms", port))
	defer lc.close()
	waitFor(t, 10*time.Second, "the client's first answers", func() bool { ok, _, _, _ := lc.counts(); return ok > 10 })
	phaseStart := time.Now()
	check := func(phase string) {
		t.Helper()
		ok, refused, reset, other := lc.counts()
		t.Logf("%s (%v): %d ok in all, %d refused, %d reset, %d other errors", phase, time.Since(phaseStart).Round(time.Millisecond), ok, refused, reset, other)
		phaseStart = time.Now()
		if refused+reset+other > 0 {
			t.Fatalf("%s: %d refused, %d reset, %d other failed requests (last: %v)", phase, refused, reset, other, lc.lastErr.Load())
		}
	}
	pids := func(a *cluster.App) map[int]bool {
		m := map[int]bool{}
		for _, e := range a.Executors {
			m[e.PID] = true
		}
		return m
	}

	// 1. Rolling restart.
	c.mustGear("app", "restart", id)
	a := healthy("every instance restarted and passing", 1, pids(before))
	check("rolling restart")

	// 2. Worker restart (kill -9): the instances keep serving; the new
	// worker adopts them.
	oldBoot := c.aliveWorkers()[0].BootID
	c.kill("worker0", syscall.SIGKILL)
	c.startWorker(0)
	var w cluster.Worker
	waitFor(t, 30*time.Second, "the restarted worker to register", func() bool {
		ws := c.aliveWorkers()
		if len(ws) == 1 && ws[0].BootID != oldBoot {
			w = ws[0]
			return true
		}
		return false
	})
	waitFor(t, 30*time.Second, "the restarted worker to adopt the 4 instances (same pids) and find them healthy", func() bool {
		hb, err := workerView(t, w.Addr)
		if err != nil || hb.Worker.BootID != w.BootID || len(hb.Executors) != 4 {
			return false
		}
		for i, r := range hb.Executors {
			if r.State != cluster.Running || r.PID != a.Executors[i].PID || r.Health != cluster.HealthPassing {
				return false
			}
		}
		return true
	})
	check("worker restart")

	// 3. A rolling restart after it: the new worker passes the socket it
	// took back from an instance.
	c.mustGear("app", "restart", id)
	a = healthy("every instance restarted again and passing", 2, pids(a))
	check("rolling restart after the worker restart")

	// 4. kill -9 of one instance: at most the request it held fails, and
	// nothing is refused.
	ok0, _, _, _ := lc.counts()
	victim := a.Executors[1].PID
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	healthy("the killed instance restarted and passing", 2, map[int]bool{victim: true})
	waitFor(t, 10*time.Second, "more answers after the kill", func() bool { ok, _, _, _ := lc.counts(); return ok > ok0+20 })
	lc.close()
	ok, refused, reset, other := lc.counts()
	defer func() {
		// 5. app disable takes the executors out of rotation through their
		// ECV pages on the worker, without stopping them; enable puts
		// them back; the worker's own /ecv is AVAILABLE meanwhile.
		b := c.appInfo(id)
		e := b.Executors[0]
		ws := c.aliveWorkers()
		if len(ws) != 1 {
			t.Fatalf("alive workers: %+v", ws)
		}
		workerAddr := ws[0].Addr
		ecv := func(path string) int {
			resp, err := http.Get("http://" + workerAddr + path)
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := ecv("/ecv/" + e.ID); code != http.StatusOK {
			t.Fatalf("/ecv/%s = %d before disable, want 200", e.ID, code)
		}
		c.mustGear("app", "disable", id)
		waitFor(t, 10*time.Second, "/ecv/"+e.ID+" to say 503 after app disable", func() bool { return ecv("/ecv/"+e.ID) == http.StatusServiceUnavailable })
		if code := ecv("/ecv"); code != http.StatusOK {
			t.Errorf("the worker's /ecv = %d while an app is disabled, want 200", code)
		}
		if !alive(e.PID) {
			t.Errorf("app disable stopped executor %s", e.ID)
		}
		c.mustGear("app", "enable", id)
		waitFor(t, 10*time.Second, "/ecv/"+e.ID+" to say 200 after app enable", func() bool { return ecv("/ecv/"+e.ID) == http.StatusOK })
	}()
	t.Logf("kill -9 of one instance: %d ok, %d refused, %d reset, %d other", ok, refused, reset, other)
	if refused > 0 || reset+other > 1 {
		t.Fatalf("kill -9 of one instance: %d refused, %d reset, %d other (want 0 refused and at most the 1 request in hand lost; last: %v)", refused, reset, other, lc.lastErr.Load())
	}
}

// TestHealthCheckRestartsUnhealthy: a command health check that starts
// failing makes the worker stop the executor; its restart policy starts
// it again (a new pid, a restart counted, the reason kept); app info and
// the events show the health going failing and back to passing.
func TestHealthCheckRestartsUnhealthy(t *testing.T) {
	c, out := workerCluster(t, "")
	sick := filepath.Join(out, "sick")
	check := fmt.Sprintf(`health { command = ["/bin/sh", "-c", "test ! -e %s"], interval = 200ms, timeout = 2s, failures = 2 }`, sick)
	id := c.submit(testBundle(t, out, "checked", `command = ["./server.sh"]`, "instances = 1", "stop-timeout = 2s", "min-uptime = 100ms", check))
	var before cluster.Executor
	waitFor(t, 30*time.Second, "the executor RUNNING and passing", func() bool {
		a := c.appInfo(id)
		if a == nil || len(a.Executors) != 1 {
			return false
		}
		before = a.Executors[0]
		return before.State == cluster.Running && before.Health == cluster.HealthPassing && alive(before.PID)
	})
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the unhealthy executor to be stopped", func() bool { return !alive(before.PID) })
	if err := os.Remove(sick); err != nil {
		t.Fatal(err)
	}
	var after cluster.Executor
	waitFor(t, 30*time.Second, "the executor restarted and passing again", func() bool {
		a := c.appInfo(id)
		if a == nil || len(a.Executors) != 1 {
			return false
		}
		after = a.Executors[0]
		return after.State == cluster.Running && after.Health == cluster.HealthPassing && after.PID != before.PID && alive(after.PID)
	})
	if after.Restarts < 1 {
		t.Errorf("restarts = %d after an unhealthy stop, want >= 1", after.Restarts)
	}
	info := c.mustGear("app", "info", id)
	if !strings.Contains(info, "HEALTH") || !strings.Contains(info, "passing") {
		t.Errorf("app info does not show the health:\n%s", info)
	}
	var states []string
	for _, line := range strings.Split(strings.TrimSpace(c.mustGear("events", "-json")), "\n") {
		var e cluster.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("events -json line %q: %v", line, err)
		}
		if e.Type == "health" && e.Executor == before.ID {
			states = append(states, e.State)
		}
	}
	if !slices.Contains(states, "failing") || states[len(states)-1] != "passing" {
		t.Errorf("health events %v: want failing, then passing last", states)
	}
	c.killApp(id, []int{after.PID})
}
