package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A descriptor the worker inherited (here a lock file at fd 3, as
// `flock LOCK bin/worker` leaves one) does not reach its executors: an
// executor may outlive its worker, and would hold the lock for as long
// as it runs.
func TestExecutorsDoNotInheritTheWorkersDescriptors(t *testing.T) {
	out := t.TempDir()
	t.Cleanup(func() { sweepExecutors(t, out) })
	marker, err := os.Create(filepath.Join(t.TempDir(), "inherited-marker"))
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, files: []*os.File{marker}})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	waitFor(t, 20*time.Second, "the worker to register", func() bool { return len(c.aliveWorkers()) == 1 })
	id := c.submit(testBundle(t, out, "fds",
		`command = ["/bin/sh", "-c", "ls -l /proc/self/fd/ > \"$GEAR_TEST_OUT/fds.tmp\"; mv \"$GEAR_TEST_OUT/fds.tmp\" \"$GEAR_TEST_OUT/fds\"; trap 'exit 0' TERM; while :; do sleep 1; done"]`))
	var fds string
	waitFor(t, 30*time.Second, "the executor's list of its descriptors", func() bool {
		b, err := os.ReadFile(filepath.Join(out, "fds"))
		fds = string(b)
		return err == nil
	})
	if strings.Contains(fds, "inherited-marker") {
		t.Fatalf("the executor holds the worker's inherited descriptor:\n%s", fds)
	}
	c.mustGear("app", "kill", id)
}
