package test

import (
	"archive/tar"
	"compress/gzip"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// One master and one worker as separate processes: submit both example
// bundles through the CLI, see their processes run with PIDs, kill the
// apps and see the processes go.
func TestSubmitRunKill(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	waitFor(t, 20*time.Second, "the worker to register", func() bool {
		out, _, code := c.gear("workers", "-json")
		return code == 0 && strings.Contains(out, `"alive": true`)
	})

	cases := []struct {
		name   string
		bundle string
		args   []string
		execs  int
		needs  string
	}{
		{name: "tar.gz", bundle: example("hello.tar.gz"), execs: 1},
		{name: "jar", bundle: example("hello.jar"), args: []string{"--", "one", "two"}, execs: 1, needs: "java"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needs != "" {
				needProgram(t, tc.needs)
			}
			// One core machine-wide is enough for one pinned instance.
			args := append([]string{"app", "submit", tc.bundle, "-executors", "1", "-quiet"}, tc.args...)
			id := strings.TrimSpace(c.mustGear(args...))
			if _, err := strconv.Atoi(id); err != nil {
				t.Fatalf("app submit printed %q, want an app id", id)
			}
			var pids map[string]int
			waitFor(t, 30*time.Second, "app "+id+" RUNNING with PIDs", func() bool {
				pids = runningPIDs(c.app(id))
				return len(pids) == tc.execs
			})
			for eid, pid := range pids {
				if !alive(pid) {
					t.Fatalf("executor %s reports pid %d, which is not running", eid, pid)
				}
			}
			if tc.name == "jar" {
				cmdline := readFile(t, "/proc/"+strconv.Itoa(pids[id+".main.0"])+"/cmdline")
				if !strings.Contains(cmdline, "Hello") || !strings.Contains(cmdline, "two") {
					t.Fatalf("jar executor command line %q lacks main class and args", cmdline)
				}
			}
			c.mustGear("app", "kill", id)
			waitFor(t, 30*time.Second, "app "+id+" KILLED and its processes gone", func() bool {
				a := c.app(id)
				if a == nil || a.State != cluster.AppKilled {
					return false
				}
				for _, pid := range pids {
					if alive(pid) {
						return false
					}
				}
				for _, e := range a.Executors {
					if e.State != cluster.Stopped {
						return false
					}
				}
				return true
			})
		})
	}
}

// Bad input gets a clear error, a non-zero exit, and changes nothing.
func TestBadInput(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 0})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() != "" })
	dir := t.TempDir()

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noManifest := filepath.Join(dir, "nomanifest.tar.gz")
	writeTarGz(t, noManifest, map[string]string{"server.sh": "#!/bin/sh\nsleep 100\n"})
	badConf := write("bad.conf", "gear {\n  cluster.masters = [\"node1\"]\n}\n")
	syntaxConf := write("syntax.conf", "gear.hostname = \"a\"\ngear.cluster {\n  masters = [\"a:1\"\n")

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown bundle type", []string{"app", "submit", write("app.exe", "MZ")}, []string{"app.exe", ".jar", ".tar.gz"}},
		{"missing file", []string{"app", "submit", filepath.Join(dir, "nope.tar.gz")}, []string{"nope.tar.gz"}},
		{"bundle without manifest", []string{"app", "submit", noManifest}, []string{"gear-app.conf"}},
		{"master address without port", []string{"config", "check", "-conf", badConf}, []string{"bad.conf:2:", "node1", "port"}},
		{"malformed conf", []string{"config", "check", "-conf", syntaxConf}, []string{"syntax.conf:"}},
		{"master without port on the command line", []string{"-master", "127.0.0.1", "app", "list"}, []string{"127.0.0.1", "port"}},
		{"unknown app", []string{"app", "info", "999"}, []string{"999"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.gear(tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want an error\nstdout: %s\nstderr: %s", out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
	if apps := c.apps(); len(apps) != 0 {
		t.Fatalf("bad submits created apps: %+v", apps)
	}

	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		p := c.start("busy", "master", "-ip", "127.0.0.1", "-port", port, "-datadir", filepath.Join(dir, "busy"))
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatal("a master on a busy port did not exit")
		}
		if p.cmd.ProcessState.ExitCode() == 0 {
			t.Fatal("a master on a busy port exited 0")
		}
		if log := readFile(t, p.log); !strings.Contains(log, "port "+port+" is already in use by another process") {
			t.Fatalf("log does not say the port is in use:\n%s", log)
		}
	})
}

// A worker that cannot reach any master keeps retrying with backoff, says
// so in its log, and does not spin.
func TestWorkerWithoutMaster(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t, "127.0.0.1") // nothing listens here
	conf := filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(conf, []byte("gear.cluster.masters = [\"127.0.0.1:"+strconv.Itoa(port)+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, dir: dir, conf: conf, procs: map[string]*proc{}}
	t.Cleanup(c.stopAll)
	p := c.startWorker(0)
	waitFor(t, 20*time.Second, "the worker to log that it cannot reach a master", func() bool {
		return strings.Contains(readFile(t, p.log), "cannot reach the leader through any master")
	})
	// Give it time to spin if it were going to, measured by CPU used.
	start := cpuTicks(t, p.cmd.Process.Pid)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("worker exited: %v\n%s", p.err, readFile(t, p.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
	used := cpuTicks(t, p.cmd.Process.Pid) - start
	if used > 100 { // 1 s of CPU in 3 s would be spinning
		t.Fatalf("worker used %d ticks of CPU in 3 s while disconnected: it spins", used)
	}
	if n := strings.Count(readFile(t, p.log), "cannot reach the leader"); n > 5 {
		t.Fatalf("worker logged the failure %d times in a few seconds; want a rate-limited log", n)
	}
	c.kill("worker0", syscall.SIGTERM)
}

// writeTarGz writes a .tar.gz holding files (name -> content).
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
}

func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	f := strings.Fields(readFile(t, "/proc/"+strconv.Itoa(pid)+"/stat"))
	if len(f) < 15 {
		t.Fatalf("cannot read cpu ticks of %d", pid)
	}
	u, _ := strconv.Atoi(f[13])
	s, _ := strconv.Atoi(f[14])
	return u + s
}
