package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// limitsBundle writes a .tar.gz whose gear-app.conf has the given groups
// (name -> manifest lines).
func limitsBundle(t *testing.T, name string, groups map[string]string) string {
	t.Helper()
	var m strings.Builder
	fmt.Fprintf(&m, "name = %q\nprocesses {\n", name)
	for g, lines := range groups {
		fmt.Fprintf(&m, "  %s {\n    command = [\"./idle.sh\"]\n    %s\n  }\n", g, lines)
	}
	m.WriteString("}\n")
	path := filepath.Join(t.TempDir(), name+".tar.gz")
	writeTarGz(t, path, map[string]string{"gear-app.conf": m.String(), "idle.sh": "#!/bin/sh\nexec sleep 3600\n"})
	return path
}

// One valid request used to make a raft entry over raft-wal's 64 MiB
// limit: the leader's log became unreadable, the commit index stopped and
// every later write hung. Now what cannot be placed in one go is refused
// with a 400 that names the limit, a large placement is replicated in
// batches, and the cluster keeps taking writes.
func TestOneRequestCannotWedgeTheCluster(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })

	pinned := c.submit(limitsBundle(t, "pinned", map[string]string{"web": "instances = 1\n    cpus = 1"}))

	// The scale from the report: 400, naming the limit, and nothing changes.
	code, body := postJSON(t, "http://"+leader+"/api/v1/apps/"+pinned+"/scale", cluster.ScaleRequest{Instances: 1000000})
	if code != http.StatusBadRequest || !strings.Contains(body, "scale to 1000000 instances: over gear.limits.instances-per-process = 10000 (raise it in gear.conf)") {
		t.Fatalf("scale to a million: %d %s", code, body)
	}
	// Through the CLI and a follower too.
	var follower string
	for _, m := range c.masters {
		if m != leader {
			follower = m
		}
	}
	_, stderr, exit := c.gear("-master", follower, "app", "scale", pinned, "1000000")
	if exit == 0 || !strings.Contains(stderr, "gear.limits.instances-per-process = 10000") {
		t.Fatalf("gear app scale 1000000 through a follower: exit %d: %s", exit, stderr)
	}
	if a := c.appInfo(pinned); a == nil || len(a.Executors) != 1 {
		t.Fatalf("a refused scale changed the app: %+v", a)
	}

	// 40 groups x 10 000 instances passes every per-group check, not the per-app one.
	groups := map[string]string{}
	for i := range 40 {
		groups[fmt.Sprintf("g%d", i)] = "instances = 10000\n    cpus = 1"
	}
	_, stderr, exit = c.gear("app", "submit", limitsBundle(t, "forty", groups), "-quiet")
	if exit == 0 || !strings.Contains(stderr, "400000 executors") || !strings.Contains(stderr, "gear.limits.executors-per-app = 10000") {
		t.Fatalf("40 x 10 000 submit: exit %d: %s", exit, stderr)
	}

	// A 7 MB app name: refused, and not written to the log in full.
	huge := strings.Repeat("n", 7<<20)
	code, body = postJSON(t, "http://"+leader+"/api/v1/apps", cluster.SubmitRequest{Name: huge, Bundle: cluster.Bundle{Digest: "sha256:" + strings.Repeat("0", 64)},
		Processes: []cluster.Process{{Name: "web", Command: []string{"x"}, Instances: 1}}})
	if code != http.StatusBadRequest || !strings.Contains(body, "gear.limits.name-length = 200") || len(body) > 1000 {
		t.Fatalf("a 7 MB name: %d %.500s", code, body)
	}

	// A submit that passes every limit but would not fit in one raft
	// entry (2 MB of env): 400, naming the entry limit.
	bundle := c.appInfo(pinned).Bundle
	code, body = postJSON(t, "http://"+leader+"/api/v1/apps", cluster.SubmitRequest{Name: "fat", Bundle: bundle,
		Processes: []cluster.Process{{Name: "web", Command: []string{"x"}, Instances: 1, Env: map[string]string{"BLOB": strings.Repeat("b", 2<<20)}}}})
	if code != http.StatusBadRequest || !strings.Contains(body, "over the limit of 1048576 bytes (1 MiB) per entry") {
		t.Fatalf("a 2 MB submit: %d %.500s", code, body)
	}

	// The cluster still takes writes: a submit, and a scale of an unpinned
	// group to 10 000 executors. With no worker, each of them gets a
	// "waiting for a worker" placement error: about 2 MB of placements,
	// which must go in several entries.
	start := time.Now()
	idle := c.submit(limitsBundle(t, "idle", map[string]string{"web": "instances = 1\n    cpus = 0"}))
	c.mustGear("app", "scale", idle, "10000")
	waitFor(t, 60*time.Second, "10 000 executors, each placed or told why not", func() bool {
		a := c.appInfo(idle)
		if a == nil || len(a.Executors) != 10000 {
			return false
		}
		for _, e := range a.Executors {
			if e.LastError == "" && e.Worker == "" {
				return false
			}
		}
		return true
	})
	t.Logf("submit + scale to 10 000 + placement committed in %v", time.Since(start))

	// instances = 0 is RUNNING with no executors.
	zero := c.submit(limitsBundle(t, "zero", map[string]string{"web": "instances = 0"}))
	waitFor(t, 20*time.Second, "an app with instances = 0 to be RUNNING", func() bool {
		a := c.appInfo(zero)
		return a != nil && a.State == cluster.AppRunning && a.Executors != nil && len(a.Executors) == 0
	})
	out := c.mustGear("app", "info", zero, "-json")
	if !strings.Contains(out, `"executors": []`) {
		t.Fatalf("app info of an app with instances = 0 must list \"executors\": []:\n%s", out)
	}

	// Healthy: no stalled commit index anywhere, a quorum.
	for _, m := range c.mastersView() {
		if !m.CommitStalledSince.IsZero() || !m.Quorum {
			t.Fatalf("masters after the storm: %+v", c.mastersView())
		}
	}
	for i := range c.masters {
		log := readFile(t, filepath.Join(c.dir, fmt.Sprintf("master%d.log", i)))
		if strings.Contains(log, "MaxEntrySize") || strings.Contains(log, "WAL is corrupt") {
			t.Fatalf("master%d's log mentions a corrupt log or MaxEntrySize", i)
		}
		if strings.Contains(log, strings.Repeat("n", 1000)) {
			t.Fatalf("master%d logged the 7 MB app name", i)
		}
		if st, _ := os.Stat(filepath.Join(c.dir, fmt.Sprintf("master%d.log", i))); st != nil && st.Size() > 5<<20 {
			t.Fatalf("master%d's log is %d bytes", i, st.Size())
		}
	}
}

// memory = 32MiB: an executor that allocates beyond it is killed in its
// cgroup and restarted by its policy, and app info says "out of memory".
func TestExecutorOutOfMemory(t *testing.T) {
	c, out := workerCluster(t, "gear.executor.backoff-min = 100ms\ngear.executor.backoff-max = 200ms\n")
	id := c.submit(testBundle(t, out, "hog",
		`command = ["/bin/sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"]`,
		`restart = "always"`, "memory = 32MiB", "max-restarts = 100", "min-uptime = 1ms"))
	var e cluster.Executor
	waitFor(t, 60*time.Second, "the executor restarted after running out of memory", func() bool {
		a := c.appInfo(id)
		if a == nil || len(a.Executors) != 1 {
			return false
		}
		e = a.Executors[0]
		return e.Restarts >= 1 && strings.Contains(e.LastExit, "out of memory")
	})
	t.Logf("restarts %d, last exit %q", e.Restarts, e.LastExit)
	c.killApp(id, nil)
}
