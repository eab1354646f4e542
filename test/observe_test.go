package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gear-run/gear/pkg/cluster"
)

// scrape fetches and parses a daemon's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", addr, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", addr, err)
	}
	return fams
}

// metricValue sums the series of family name whose labels include want.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
series:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue series
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func hasPrefix(fams map[string]*dto.MetricFamily, prefix string) bool {
	for n := range fams {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

func (c *testCluster) workerAddr() string {
	c.t.Helper()
	var ws []cluster.Worker
	if err := json.Unmarshal([]byte(c.mustGear("workers", "-json")), &ws); err != nil || len(ws) == 0 {
		c.t.Fatalf("workers -json: %v (%d workers)", err, len(ws))
	}
	return ws[0].Addr
}

func (c *testCluster) waitWorker() {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "the worker to register", func() bool {
		out, _, code := c.gear("workers", "-json")
		return code == 0 && strings.Contains(out, `"alive": true`)
	})
}

func (c *testCluster) submitRunning(bundle string) (string, map[string]int) {
	c.t.Helper()
	id := strings.TrimSpace(c.mustGear("app", "submit", bundle, "-executors", "1", "-quiet"))
	var pids map[string]int
	waitFor(c.t, 30*time.Second, "app "+id+" RUNNING", func() bool {
		pids = runningPIDs(c.app(id))
		return len(pids) == 1
	})
	return id, pids
}

// A real master and worker: after a submit, their /metrics parse and hold
// the go_/process_ series, raft's and memberlist's own, and gear's.
func TestMetricsScrape(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	c.waitWorker()
	id, pids := c.submitRunning(example("hello.tar.gz"))
	master, worker := c.masters[0], c.workerAddr()

	type check struct {
		name   string
		labels map[string]string
		min    float64
	}
	expect := func(addr string, checks []check, prefixes ...string) map[string]*dto.MetricFamily {
		t.Helper()
		var fams map[string]*dto.MetricFamily
		var bad []string
		// Heartbeats and the worker's first scrape of a new process are
		// asynchronous: poll until every check holds.
		deadline := time.Now().Add(20 * time.Second)
		for {
			fams, bad = scrape(t, addr), nil
			for _, ch := range checks {
				v, ok := metricValue(fams, ch.name, ch.labels)
				if !ok || v < ch.min {
					bad = append(bad, fmt.Sprintf("%s%v = %v (present %v), want >= %v", ch.name, ch.labels, v, ok, ch.min))
				}
			}
			for _, p := range prefixes {
				if !hasPrefix(fams, p) {
					bad = append(bad, "no "+p+"* series")
				}
			}
			if len(bad) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(bad) > 0 {
			t.Fatalf("metrics of %s:\n  %s", addr, strings.Join(bad, "\n  "))
		}
		return fams
	}
	bundleSize := float64(0)
	if st, err := os.Stat(example("hello.tar.gz")); err == nil {
		bundleSize = float64(st.Size())
	}
	mf := expect(master, []check{
		{"go_goroutines", nil, 1},
		{"process_cpu_seconds_total", nil, 0},
		{"process_resident_memory_bytes", nil, 1},
		{"gear_master_leader", nil, 1},
		{"gear_leader_changes_total", nil, 1},
		{"gear_api_requests_total", map[string]string{"route": "POST /api/v1/apps", "code": "200"}, 1},
		{"gear_api_requests_total", map[string]string{"route": "POST /api/v1/bundles", "code": "200"}, 1},
		{"gear_api_request_duration_seconds", map[string]string{"route": "POST /api/v1/apps"}, 1},
		{"gear_heartbeats_total", map[string]string{"result": "ok"}, 1},
		{"gear_jarstore_bytes_total", map[string]string{"op": "put"}, bundleSize},
		{"gear_jarstore_duration_seconds", map[string]string{"op": "put", "result": "ok"}, 1},
		{"gear_executors", map[string]string{"state": "RUNNING"}, 1},
		{"gear_apps", map[string]string{"state": "RUNNING"}, 1},
	}, "raft_", "memberlist_")
	var eid string
	var pid int
	for k, v := range pids {
		eid, pid = k, v
	}
	wf := expect(worker, []check{
		{"go_goroutines", nil, 1},
		{"process_resident_memory_bytes", nil, 1},
		{"gear_executor_starts_total", nil, 1},
		{"gear_worker_heartbeats_total", map[string]string{"result": "ok"}, 1},
		{"gear_executor_rss_bytes", map[string]string{"executor": eid, "app": id}, 4096},
		{"gear_executor_cpu_seconds_total", map[string]string{"executor": eid, "app": id}, 0},
		{"gear_worker_executors", map[string]string{"state": "RUNNING"}, 1},
	}, "memberlist_")
	rss, _ := metricValue(wf, "gear_executor_rss_bytes", map[string]string{"executor": eid})
	t.Logf("executor %s (pid %d): rss %.0f bytes; master exposes %d families, worker %d", eid, pid, rss, len(mf), len(wf))

	// An executor killed by a signal it was not sent by gear counts as an
	// exit by signal, and its restart as a restart.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	expect(worker, []check{
		{"gear_executor_exits_total", map[string]string{"reason": "signal"}, 1},
		{"gear_executor_restarts_total", nil, 1},
		{"gear_executor_starts_total", nil, 2},
	})
	c.mustGear("app", "kill", id)
	expect(worker, []check{{"gear_executor_exits_total", map[string]string{"reason": "stopped"}, 1}})
}

// eventsFollower runs `gear events -f -json` and collects what it prints.
type eventsFollower struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []cluster.Event
	stderr string
	done   chan struct{}
}

func (c *testCluster) followEvents(masters []string) *eventsFollower {
	c.t.Helper()
	cmd := exec.Command(gearBin, "-master", strings.Join(masters, ","), "events", "-f", "-json")
	cmd.Env = append(append(os.Environ(), "GEAR_CONF="+c.conf), c.env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	errPath := filepath.Join(c.dir, "events.stderr")
	ef, err := os.Create(errPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stderr = ef
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	f := &eventsFollower{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e cluster.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				c.t.Errorf("gear events -json printed %q: %v", sc.Text(), err)
				continue
			}
			f.mu.Lock()
			f.events = append(f.events, e)
			f.mu.Unlock()
		}
	}()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-f.done
		_ = cmd.Wait()
		ef.Close()
		if c.t.Failed() {
			c.t.Logf("gear events stderr:\n%s", readFile(c.t, errPath))
		}
	})
	return f
}

func (f *eventsFollower) seen(match func(cluster.Event) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.events, match)
}

func (f *eventsFollower) snapshot() []cluster.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// gear events -f follows the leader; the leader is killed mid-follow; the
// stream resumes on another master, and the replicated events it printed
// are exactly the survivors' (no duplicate, no gap).
func TestEventsFollowFailover(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 1})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	c.waitWorker()
	// The leader first: the follower streams from the master that dies.
	order := []string{leader}
	for _, m := range c.masters {
		if m != leader {
			order = append(order, m)
		}
	}
	f := c.followEvents(order)
	id, _ := c.submitRunning(example("hello.tar.gz"))
	waitFor(t, 20*time.Second, "the submit and RUNNING events", func() bool {
		return f.seen(func(e cluster.Event) bool { return e.Type == "submit" && e.App == id }) &&
			f.seen(func(e cluster.Event) bool { return e.Type == "executor" && e.App == id && e.State == "RUNNING" })
	})
	before := len(f.snapshot())
	c.kill(c.masterName(leader), syscall.SIGKILL)
	var newLeader string
	waitFor(t, 30*time.Second, "a new leader", func() bool { newLeader = c.leader(); return newLeader != "" && newLeader != leader })
	c.mustGear("app", "scale", id, "0")
	c.mustGear("app", "kill", id)
	waitFor(t, 30*time.Second, "the scale and kill events after the failover", func() bool {
		return f.seen(func(e cluster.Event) bool { return e.Type == "scale" && e.App == id }) &&
			f.seen(func(e cluster.Event) bool { return e.Type == "kill" && e.App == id })
	})
	got := f.snapshot()
	t.Logf("the follower printed %d events, %d before the leader %s was killed; new leader %s", len(got), before, leader, newLeader)

	// What a survivor holds, replicated events only, up to the last one the
	// follower printed.
	var all []cluster.Event
	for _, line := range strings.Split(strings.TrimSpace(c.mustGear("-master", newLeader, "events", "-json")), "\n") {
		var e cluster.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("events -json line %q: %v", line, err)
		}
		all = append(all, e)
	}
	replicated := func(evs []cluster.Event) (out []string) {
		for _, e := range evs {
			if e.Replicated {
				out = append(out, e.ID+" "+e.Type+" "+e.Executor+" "+e.State)
			}
		}
		return out
	}
	mine, theirs := replicated(got), replicated(all)
	seen := map[string]bool{}
	for _, e := range mine {
		if seen[e] {
			t.Errorf("event printed twice: %s", e)
		}
		seen[e] = true
	}
	last := got[len(got)-1]
	var want []string
	for _, e := range all {
		if e.Replicated && (e.Index < last.Index || e.Index == last.Index && e.Seq <= last.Seq) {
			want = append(want, e.ID+" "+e.Type+" "+e.Executor+" "+e.State)
		}
	}
	if !slices.Equal(mine, want) {
		t.Fatalf("the follower's replicated events differ from the survivor's:\nfollower:\n  %s\nsurvivor %s:\n  %s",
			strings.Join(mine, "\n  "), newLeader, strings.Join(theirs, "\n  "))
	}
	// Every survivor timed the failover it saw.
	for _, m := range c.masters {
		if m == leader {
			continue
		}
		fams := scrape(t, m)
		n, _ := metricValue(fams, "gear_failover_duration_seconds", nil)
		h := fams["gear_failover_duration_seconds"]
		if n < 1 || h == nil {
			t.Errorf("master %s: gear_failover_duration_seconds has %v samples, want >= 1", m, n)
			continue
		}
		sum := h.GetMetric()[0].GetHistogram().GetSampleSum()
		if sum <= 0 || sum > 30 {
			t.Errorf("master %s: failover took %.3fs by its histogram, want (0, 30]", m, sum)
		}
		t.Logf("master %s saw a failover of %.3fs (gear_failover_duration_seconds)", m, sum)
	}
	// The leader events are each master's own: the survivor's may predate
	// the point the follower resumed from, so they are logged, not required.
	for _, e := range got {
		if e.Type == "leader" {
			t.Logf("leader event %s from %s: %s", e.ID, e.Master, e.Message)
		}
	}
}
