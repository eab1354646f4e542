package test

// Crash loops that give up (issue 11, finding 8), with real master, worker
// and executor processes: a command that cannot be executed is FAILED at
// once with the reason; more than max-restarts runs in a row shorter than
// min-uptime are FAILED however long the backoff between them (and however
// short restart-window is); the count survives a worker restart.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// A command that cannot be executed is FAILED at once, with the reason in
// `app info`, and never restarted: a bare name not in PATH (the CLI passes
// it). A ./command missing from the bundle, submitted through the API as
// the prober did (the CLI would refuse it), is refused by the
// master's own inspection of the bundle (issue 17).
func TestExecFailureFailsAtOnce(t *testing.T) {
	c, out := workerCluster(t, "")
	tests := []struct {
		name    string
		command string
		viaAPI  bool
		want    string
	}{
		{"not in PATH", "gear-no-such-program", false, "exec gear-no-such-program: not found in PATH (the command must exist in the bundle dir or PATH"},
		{"not in the bundle", "./server", true, "exec ./server: no such file or directory (the command must exist in the bundle dir or PATH)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := testBundle(t, out, "missing", fmt.Sprintf(`command = [%q, "-port", "${PORT}"]`, tt.command), `restart = "always"`, "max-restarts = 10")
			var id string
			if tt.viaAPI {
				err := submitViaAPIErr(t, c, bundle, cluster.Process{Name: "main", Command: []string{tt.command}, Instances: 1, Restart: "always", MaxRestarts: 10})
				var ae *cluster.APIError
				if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "command ./server is not in the bundle") {
					t.Fatalf("submit of a command missing from the bundle: %v; want 400 from the master's inspection", err)
				}
				return
			} else {
				id = c.submit(bundle)
			}
			start := time.Now()
			var a *cluster.App
			waitFor(t, 30*time.Second, "app "+id+" FAILED", func() bool {
				a = c.appInfo(id)
				return a != nil && a.State == cluster.AppFailed
			})
			t.Logf("FAILED %v after the submit", time.Since(start).Round(time.Millisecond))
			e := a.Executors[0]
			if e.State != cluster.Failed || !strings.Contains(e.LastError, tt.want) {
				t.Fatalf("executor %s, last error %q; want FAILED with %q", e.State, e.LastError, tt.want)
			}
			if e.Restarts != 0 || e.PID != 0 {
				t.Errorf("restarts %d pid %d, want 0 and 0", e.Restarts, e.PID)
			}
			if stdout := c.mustGear("app", "info", id); !strings.Contains(stdout, tt.command+":") {
				t.Errorf("app info does not show the reason:\n%s", stdout)
			}
			holdFor(t, 2*time.Second, "the executor to stay FAILED without restarts", func() error {
				b := c.appInfo(id)
				if b == nil {
					return nil
				}
				if be := b.Executors[0]; be.State != cluster.Failed || be.Restarts != 0 {
					return fmt.Errorf("executor %s, restarts %d", be.State, be.Restarts)
				}
				return nil
			})
			c.killApp(id, nil)
		})
	}
}

// submitViaAPI uploads bundle and submits it with processes as given,
// without the CLI's checks of the bundle.
func submitViaAPI(t *testing.T, c *testCluster, bundle string, procs ...cluster.Process) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := cluster.NewClient(c.masters, "")
	st, err := os.Stat(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.UploadBundle(ctx, filepath.Base(bundle), st.Size(), func() (io.ReadCloser, error) { return os.Open(bundle) })
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	id, err := client.Submit(ctx, cluster.SubmitRequest{Name: "missing", Bundle: b, Processes: procs})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}

// submitViaAPIErr is submitViaAPI for a submit that may be refused.
func submitViaAPIErr(t *testing.T, c *testCluster, bundle string, procs ...cluster.Process) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := cluster.NewClient(c.masters, "")
	st, err := os.Stat(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.UploadBundle(ctx, filepath.Base(bundle), st.Size(), func() (io.ReadCloser, error) { return os.Open(bundle) })
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	_, err = client.Submit(ctx, cluster.SubmitRequest{Name: "missing", Bundle: b, Processes: procs})
	return err
}

// slowCrashConf: backoff far longer than each run (0.2s), and a
// restart-window shorter than the backoff, so that no window ever holds
// more than two crashes: the old window rule never gave up on this.
const slowCrashConf = "gear.executor.backoff-min = 300ms\ngear.executor.backoff-max = 1200ms\n"

// slowCrashLines: each run lasts ~0.2s (sleep, then crash.sh records its
// start and exits 3), well under min-uptime.
var slowCrashLines = []string{
	`command = ["/bin/sh", "-c", "sleep 0.2; exec ./crash.sh"]`, `restart = "always"`,
	"min-uptime = 1s", "max-restarts = 3", "restart-window = 250ms",
}

// More than max-restarts consecutive short runs are FAILED, however long
// the backoff between them.
func TestSlowCrashLoopFails(t *testing.T) {
	c, out := workerCluster(t, slowCrashConf)
	id := c.submit(testBundle(t, out, "slowcrash", slowCrashLines...))
	eid := id + ".main.0"
	start := time.Now()
	var a *cluster.App
	waitFor(t, 40*time.Second, "app "+id+" FAILED", func() bool {
		a = c.appInfo(id)
		return a != nil && a.State == cluster.AppFailed
	})
	t.Logf("FAILED %v after the submit", time.Since(start).Round(time.Millisecond))
	e := a.Executors[0]
	if e.State != cluster.Failed || !strings.Contains(e.LastError, "crash loop: 4 runs in a row shorter than min-uptime 1s (max-restarts 3)") {
		t.Fatalf("executor %s, last error %q", e.State, e.LastError)
	}
	if !strings.Contains(e.LastExit, "status 3") {
		t.Errorf("last_exit %q, want the exit status 3", e.LastExit)
	}
	// max-restarts = 3: the first run and three restarts.
	if n := startCount(out, eid); n != 4 || e.Restarts != 3 || e.Crashes != 4 {
		t.Errorf("%d runs, restarts %d, crashes %d; want 4, 3, 4", n, e.Restarts, e.Crashes)
	}
	holdFor(t, 2*time.Second, "the executor to stay FAILED", func() error {
		if n := startCount(out, eid); n != 4 {
			return fmt.Errorf("started again after FAILED: %d runs", n)
		}
		return nil
	})
	c.killApp(id, nil)
}

// The crash count is replicated: a worker killed in the middle of a crash
// loop and started again gives up after what was left of max-restarts, not
// after a fresh count.
func TestCrashLoopCountSurvivesWorkerRestart(t *testing.T) {
	// Backoff 2s then 4s: time to see the second crash replicated and kill
	// the worker while the executor waits in BACKOFF.
	c, out := workerCluster(t, "gear.failover.timeout = 10s\ngear.executor.backoff-min = 2s\ngear.executor.backoff-max = 4s\n")
	id := c.submit(testBundle(t, out, "crashrestart", slowCrashLines...))
	eid := id + ".main.0"
	waitFor(t, 30*time.Second, "two crashes replicated, in BACKOFF", func() bool {
		a := c.appInfo(id)
		return a != nil && len(a.Executors) == 1 && a.Executors[0].Crashes == 2 && a.Executors[0].State == cluster.Backoff
	})
	c.kill("worker0", syscall.SIGKILL)
	if n := startCount(out, eid); n != 2 {
		t.Fatalf("%d runs before the worker restart, want 2", n)
	}
	c.startWorker(0)
	var a *cluster.App
	waitFor(t, 40*time.Second, "app "+id+" FAILED", func() bool {
		a = c.appInfo(id)
		return a != nil && a.State == cluster.AppFailed
	})
	e := a.Executors[0]
	// 2 runs before the restart, 2 after: the fourth in a row gives up.
	if n := startCount(out, eid); n != 4 || e.Crashes != 4 || !strings.Contains(e.LastError, "crash loop: 4 runs in a row") {
		t.Errorf("%d runs, crashes %d, last error %q; want 4 runs, the fourth in a row FAILED", n, e.Crashes, e.LastError)
	}
	c.killApp(id, nil)
}
