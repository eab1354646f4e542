package test

// Mutual TLS on the one port (gear.tls.*): a 3-master cluster and a
// worker with certificates from a CA made here; the CLI with -ca and
// GEAR_CA; the refusals a user meets without them; a worker whose
// certificate comes from another CA; a failover under TLS.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/tlsconf/tlstest"
)

func TestTLSCluster(t *testing.T) {
	ca := tlstest.NewCA(t, "gear-test")
	// One node certificate for every 127.0.0.x address the test uses;
	// in production each node has its own (README, TLS).
	node := ca.Issue("node", "127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost")
	const token = "tls-test-token"
	c := newCluster(t, clusterOpts{masters: 3, workers: 1, conf: fmt.Sprintf(
		"gear.auth.token = %q\ngear.tls.cert = %q\ngear.tls.key = %q\ngear.tls.ca = %q\ngear.failover.timeout = 3s\n",
		token, node.Cert, node.Key, ca.File)})

	// The conf holds gear.tls.ca, so the harness's CLI speaks https.
	waitFor(t, 30*time.Second, "a leader", func() bool { return c.leader() != "" })
	waitFor(t, 30*time.Second, "the worker to register over https with its certificate", func() bool {
		out, _, code := c.gear("workers", "-json")
		return code == 0 && strings.Contains(out, `"alive": true`)
	})

	// A CLI with no conf at all: only -master, -token and -ca or GEAR_CA.
	bare := filepath.Join(t.TempDir(), "bare.conf")
	if err := os.WriteFile(bare, []byte("# no tls here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	masters := strings.Join(c.masters, ",")
	bareGear := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		saved := c.env
		c.env = append(append([]string{}, saved...), append([]string{"GEAR_CONF=" + bare}, env...)...)
		defer func() { c.env = saved }()
		return c.gear(append([]string{"-master", masters, "-token", token}, args...)...)
	}

	out, errOut, code := bareGear(nil, "-ca", ca.File, "app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet")
	if code != 0 {
		t.Fatalf("submit with -ca: exit %d\n%s%s", code, out, errOut)
	}
	id := strings.TrimSpace(out)
	waitFor(t, 40*time.Second, "app "+id+" RUNNING on the TLS worker", func() bool { return len(runningPIDs(c.app(id))) == 1 })
	// Logs go CLI -> master -> worker: the master dials the worker's
	// TLS port with its node certificate.
	waitFor(t, 20*time.Second, "the executor's log through the master", func() bool {
		out, _, code := bareGear(nil, "-ca", ca.File, "logs", id)
		return code == 0 && strings.TrimSpace(out) != ""
	})
	out, errOut, code = bareGear([]string{"GEAR_CA=" + ca.File}, "app", "list", "-json")
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("app list with GEAR_CA: exit %d\n%s%s", code, out, errOut)
	}

	// Without a CA the CLI speaks plaintext and is told what to do.
	out, errOut, code = bareGear(nil, "app", "list")
	if code == 0 || !strings.Contains(errOut, "speaks TLS") || !strings.Contains(errOut, "-ca") {
		t.Fatalf("app list without -ca: exit %d, want a clear refusal\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("without -ca: %s", strings.TrimSpace(errOut))
	// With the wrong CA it refuses the master's certificate, and says why.
	other := tlstest.NewCA(t, "other")
	out, errOut, code = bareGear(nil, "-ca", other.File, "app", "list")
	if code == 0 || !strings.Contains(errOut, "not signed by the CA") {
		t.Fatalf("app list with another CA: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// A plaintext HTTP client (curl http://...) gets a 400 that says why,
	// at once (no hang).
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + c.masters[0] + "/api/v1/apps")
	if err != nil {
		t.Fatalf("plaintext GET: %v (want a 400 answer, not an error or a hang)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "use https://") {
		t.Fatalf("plaintext GET: %d %q", resp.StatusCode, body)
	}

	// A worker whose certificate comes from another CA is refused: its
	// heartbeats carry no certificate the masters accept, and its
	// gossip streams fail their handshake.
	stranger := other.Issue("stranger", "127.0.0.1")
	strangerConf := filepath.Join(t.TempDir(), "stranger.conf")
	quoted := make([]string, len(c.masters))
	for i, m := range c.masters {
		quoted[i] = fmt.Sprintf("%q", m)
	}
	if err := os.WriteFile(strangerConf, []byte(fmt.Sprintf(
		"gear.cluster.masters = [%s]\ngear.auth.token = %q\ngear.tls.cert = %q\ngear.tls.key = %q\ngear.tls.ca = %q\ngear.log.level = debug\n",
		strings.Join(quoted, ", "), token, stranger.Cert, stranger.Key, ca.File)), 0o644); err != nil {
		t.Fatal(err)
	}
	sp := c.start("stranger", "worker", "-conf", strangerConf, "-ip", "127.0.0.1", "-datadir", filepath.Join(c.dir, "stranger"))
	waitFor(t, 20*time.Second, "the stranger's heartbeats to be refused", func() bool {
		return strings.Contains(readFile(t, sp.log), "is for cluster nodes")
	})
	waitFor(t, 20*time.Second, "a master to log the refused gossip stream at warn", func() bool {
		for i := range c.masters {
			if l := readFile(t, c.procs[fmt.Sprintf("master%d", i)].log); strings.Contains(l, "refused a gossip stream") && strings.Contains(l, "level=WARN") {
				return true
			}
		}
		return false
	})
	out, _, _ = c.gear("workers", "-json")
	if strings.Count(out, `"id"`) != 1 {
		t.Fatalf("the stranger worker registered:\n%s", out)
	}
	c.kill("stranger", syscall.SIGTERM)

	// Failover under TLS: kill the leader; raft's TLS streams elect a
	// new one, the worker re-attaches over https, the app keeps its PID.
	pids := runningPIDs(c.app(id))
	leader := c.leader()
	c.kill(c.masterName(leader), syscall.SIGKILL)
	start := time.Now()
	waitFor(t, 20*time.Second, "a new leader over TLS", func() bool {
		l := c.leader()
		return l != "" && l != leader
	})
	t.Logf("new leader after %v", time.Since(start).Round(time.Millisecond))
	out, errOut, code = bareGear(nil, "-ca", ca.File, "app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet")
	if code != 0 {
		t.Fatalf("submit after failover: exit %d\n%s%s", code, out, errOut)
	}
	id2 := strings.TrimSpace(out)
	waitFor(t, 40*time.Second, "the app submitted after failover RUNNING", func() bool { return len(runningPIDs(c.app(id2))) == 1 })
	if got := runningPIDs(c.app(id)); fmt.Sprint(got) != fmt.Sprint(pids) {
		t.Fatalf("executors of %s changed over the failover: %v -> %v", id, pids, got)
	}
}
