package test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// jarstoreRoot makes an empty shared jar store directory and returns it
// with the gear.conf lines that point the masters at it. Every worker
// offers one core (core 0), so the n-th executor of a one-core process
// group needs the n-th worker.
func jarstoreRoot(t *testing.T, extra string) (dir, conf string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "jars")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, fmt.Sprintf("gear.jarstore.rootpath = %q\ngear.worker.cpus = [0]\n%s", "file://"+dir, extra)
}

// storedBlobs lists the blob files in a file:// jar store directory
// (temporary and abandoned uploads included, so leftovers are seen; the
// store-id marker is not a blob).
func storedBlobs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() == ".gear-store-id" {
			continue
		}
		names = append(names, e.Name())
	}
	return names
}

type lsEntry struct {
	Digest string   `json:"digest"`
	Size   int64    `json:"size"`
	Apps   []string `json:"apps"`
}

// jarstoreLs runs `gear jarstore ls -json` (extra global flags first).
func jarstoreLs(t *testing.T, c *testCluster, global ...string) []lsEntry {
	t.Helper()
	out := c.mustGear(append(global, "jarstore", "ls", "-json")...)
	var ls []lsEntry
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatalf("jarstore ls -json: %v\n%s", err, out)
	}
	return ls
}

// waitWorkers waits until n workers are registered and alive.
func waitWorkers(t *testing.T, c *testCluster, n int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d alive worker(s)", n), func() bool {
		out, _, code := c.gear("workers", "-json")
		return code == 0 && strings.Count(out, `"alive": true`) == n
	})
}

// workerName maps a worker id to the harness name of its process.
func workerName(t *testing.T, c *testCluster, id string, n int) string {
	t.Helper()
	for i := 0; i < n; i++ {
		if strings.TrimSpace(readFile(t, filepath.Join(c.dir, fmt.Sprintf("worker%d", i), "worker-id"))) == id {
			return fmt.Sprintf("worker%d", i)
		}
	}
	t.Fatalf("no worker process has id %s", id)
	return ""
}

// cachedBundle is the path a worker caches a bundle under.
func cachedBundle(c *testCluster, worker, digest string) string {
	return filepath.Join(c.dir, worker, "bundles", strings.TrimPrefix(digest, "sha256:")+".bundle")
}

// 3 masters on a file:// store: a bundle uploaded through a follower
// survives kill -9 of the leader, and a new worker with an empty cache
// fetches it from the surviving masters and runs it.
func TestJarStoreSurvivesLeaderLoss(t *testing.T) {
	root, conf := jarstoreRoot(t, "")
	c := newCluster(t, clusterOpts{masters: 3, workers: 1, conf: conf})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	var follower string
	for _, m := range c.masters {
		if m != leader {
			follower = m
			break
		}
	}
	waitWorkers(t, c, 1)

	// Upload through a follower: it forwards to the leader.
	id := strings.TrimSpace(c.mustGear("-master", follower, "app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet"))
	var pids map[string]int
	waitFor(t, 30*time.Second, "app "+id+" RUNNING on the first worker", func() bool {
		pids = runningPIDs(c.app(id))
		return len(pids) == 1
	})
	killPIDsAtCleanup(t, pids)
	app := c.app(id)
	digest := app.Bundle.Digest
	if blobs := storedBlobs(t, root); len(blobs) != 1 || blobs[0] != "sha256-"+strings.TrimPrefix(digest, "sha256:") {
		t.Fatalf("the shared store holds %v, want exactly the blob of %s", blobs, digest)
	}
	if ls := jarstoreLs(t, c, "-master", follower); len(ls) != 1 || ls[0].Digest != digest || len(ls[0].Apps) != 1 || ls[0].Apps[0] != id {
		t.Fatalf("jarstore ls through a follower = %+v, want %s referenced by app %s", ls, digest, id)
	}

	c.kill(c.masterName(leader), syscall.SIGKILL)
	var next string
	waitFor(t, 15*time.Second, "a new leader", func() bool { next = c.leader(); return next != "" && next != leader })

	// A new worker with an empty cache: the second executor can only go
	// there (one core per worker).
	c.startWorker(1)
	waitWorkers(t, c, 2)
	c.mustGear("app", "scale", id, "2")
	waitFor(t, 30*time.Second, "both executors RUNNING, one on the new worker", func() bool {
		pids = runningPIDs(c.app(id))
		return len(pids) == 2
	})
	killPIDsAtCleanup(t, pids)
	app = c.app(id)
	var onNew bool
	for _, e := range app.Executors {
		if workerName(t, c, e.Worker, 2) == "worker1" {
			onNew = true
		}
	}
	if !onNew {
		t.Fatalf("no executor landed on the new worker: %+v", app.Executors)
	}
	if _, err := os.Stat(cachedBundle(c, "worker1", digest)); err != nil {
		t.Fatalf("the new worker did not cache the bundle it fetched after the failover: %v", err)
	}
	// Every surviving master lists the bundle and serves its download.
	for _, m := range c.masters {
		if m == leader {
			continue
		}
		if ls := jarstoreLs(t, c, "-master", m); len(ls) != 1 || ls[0].Digest != digest {
			t.Fatalf("jarstore ls on %s after the failover = %+v", m, ls)
		}
		if got := downloadDigest(t, m, digest); got != digest {
			t.Fatalf("GET /api/v1/bundles/%s from %s after the failover hashes to %s", digest, m, got)
		}
	}
}

// downloadDigest downloads a bundle from one master and returns the
// digest of what arrived.
func downloadDigest(t *testing.T, master, digest string) string {
	t.Helper()
	resp, err := http.Get("http://" + master + "/api/v1/bundles/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET bundle %s from %s: %s %s", digest, master, resp.Status, msg)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("GET bundle %s from %s: %v", digest, master, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// A stored bundle whose bytes changed on disk is never run: a worker with
// an empty cache reports the executor FAILED with an error about the
// checksum. GC keeps referenced bundles and deletes them once their app
// is killed.
func TestJarStoreCorruptBundleNotRun(t *testing.T) {
	root, conf := jarstoreRoot(t, "")
	c := newCluster(t, clusterOpts{masters: 1, workers: 0, conf: conf})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	id := strings.TrimSpace(c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet"))
	app := c.app(id)
	if app == nil {
		t.Fatalf("app %s not listed", id)
	}
	digest := app.Bundle.Digest
	obj := filepath.Join(root, "sha256-"+strings.TrimPrefix(digest, "sha256:"))
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatalf("the bundle is not in the shared store as %s: %v", obj, err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(obj, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// A plain HTTP download never ends cleanly: the master cuts it before
	// the stated length.
	resp, err := http.Get("http://" + c.masters[0] + "/api/v1/bundles/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("GET of the corrupt bundle ended cleanly after %d bytes (status %s)", n, resp.Status)
	}
	if !strings.Contains(readFile(t, c.procs["master0"].log), "corrupt") {
		t.Fatal("the master's log does not report the corrupt bundle")
	}

	c.startWorker(0)
	waitWorkers(t, c, 1)
	c.mustGear("app", "scale", id, "1")
	var failed cluster.Executor
	waitFor(t, 30*time.Second, "the executor to fail on the corrupt bundle", func() bool {
		a := c.app(id)
		if a == nil || len(a.Executors) != 1 {
			return false
		}
		failed = a.Executors[0]
		return failed.State == cluster.Failed && failed.LastError != ""
	})
	if !strings.Contains(failed.LastError, "corrupt") || !strings.Contains(failed.LastError, digest) {
		t.Fatalf("executor error %q does not say that bundle %s is corrupt", failed.LastError, digest)
	}
	t.Logf("executor error: %s", failed.LastError)
	if failed.PID != 0 {
		t.Fatalf("a corrupt bundle was started (pid %d)", failed.PID)
	}
	if _, err := os.Stat(cachedBundle(c, "worker0", digest)); err == nil {
		t.Fatal("the worker cached a corrupt bundle")
	}

	// GC: a referenced bundle stays, even with no grace period.
	out := c.mustGear("jarstore", "gc", "-grace", "0s")
	if !strings.Contains(out, "deleted 0 ") {
		t.Fatalf("gc deleted a referenced bundle: %s", out)
	}
	if ls := jarstoreLs(t, c); len(ls) != 1 || ls[0].Digest != digest || len(ls[0].Apps) != 1 || ls[0].Apps[0] != id {
		t.Fatalf("jarstore ls = %+v, want %s referenced by %s", ls, digest, id)
	}
	c.mustGear("app", "kill", id)
	waitFor(t, 20*time.Second, "app "+id+" KILLED", func() bool {
		a := c.app(id)
		return a != nil && a.State == cluster.AppKilled
	})
	if ls := jarstoreLs(t, c); len(ls) != 1 || len(ls[0].Apps) != 0 {
		t.Fatalf("jarstore ls after kill = %+v, want one unreferenced bundle", ls)
	}
	out = c.mustGear("jarstore", "gc", "-grace", "0s")
	if !strings.Contains(out, "deleted 1 ") || !strings.Contains(out, digest) {
		t.Fatalf("gc did not delete the unreferenced bundle %s: %s", digest, out)
	}
	if ls := jarstoreLs(t, c); len(ls) != 0 {
		t.Fatalf("jarstore ls after gc = %+v, want empty", ls)
	}
	if blobs := storedBlobs(t, root); len(blobs) != 0 {
		t.Fatalf("the shared store still holds %v after gc", blobs)
	}
}

// A bundle over gear.jarstore.max-bundle-size is refused with an error
// naming the limit, and nothing is stored.
func TestJarStoreSizeLimit(t *testing.T) {
	root, conf := jarstoreRoot(t, "gear.jarstore.max-bundle-size = 1KB\n")
	c := newCluster(t, clusterOpts{masters: 1, workers: 0, conf: conf})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	out, errOut, code := c.gear("app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
	if code == 0 {
		t.Fatalf("a bundle over the 1KB limit was accepted: %s", out)
	}
	if !strings.Contains(errOut, "max-bundle-size") || !strings.Contains(errOut, "hello.tar.gz") {
		t.Fatalf("the refusal does not name the bundle and the limit:\n%s", errOut)
	}
	// An uploader that does not declare the size (chunked body) is cut
	// off while streaming, and leaves nothing either.
	body := io.MultiReader(strings.NewReader(strings.Repeat("x", 4000)))
	resp, err := http.Post("http://"+c.masters[0]+"/api/v1/bundles?name=big.tar.gz", "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || !strings.Contains(string(msg), "more than 1000 bytes") {
		t.Fatalf("chunked upload over the limit: %s %s, want a refusal naming the limit", resp.Status, msg)
	}
	if ls := jarstoreLs(t, c); len(ls) != 0 {
		t.Fatalf("jarstore ls after a refused upload = %+v, want empty", ls)
	}
	if blobs := storedBlobs(t, root); len(blobs) != 0 {
		t.Fatalf("a refused upload left %v in the store", blobs)
	}
	if apps := c.apps(); len(apps) != 0 {
		t.Fatalf("a refused upload created apps: %+v", apps)
	}
}
