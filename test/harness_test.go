// Package test holds gear's whole-system tests: real master and worker
// processes of the real binary on 127.0.0.x ports, driven through the CLI.
package test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

var (
	gearBin  string // built once in TestMain
	repoRoot string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// `make unit`: every test here starts real daemons.
		fmt.Println("test: whole-system tests skipped under -short (make test runs them)")
		os.Exit(0)
	}
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "gear-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gearBin = filepath.Join(dir, "gear")
	args := []string{"build", "-o", gearBin}
	if os.Getenv("GEAR_TEST_RACE") == "1" {
		// Daemons built with the race detector; a "DATA RACE" in any
		// daemon's log fails its test (see stopAll).
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gear:", err)
		os.Exit(1)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "conf/examples/hello.tar.gz")); err != nil {
		ex := exec.Command(filepath.Join(repoRoot, "scripts/build-examples.sh"))
		ex.Stdout, ex.Stderr = os.Stderr, os.Stderr
		if err := ex.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build examples:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needProgram fails (CI) or skips (elsewhere) when an external program is
// missing.
func needProgram(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; CI must install it (make deps)", name)
		}
		t.Skipf("%s is not installed (make deps installs it)", name)
	}
}

var portMu sync.Mutex

// freePort returns a port free for both TCP and UDP on ip.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// proc is a daemon started from the gear binary.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// cluster is a set of masters and workers for one test.
type testCluster struct {
	t       *testing.T
	dir     string
	conf    string
	masters []string
	procs   map[string]*proc
	env     []string
	mdirs   []string // per-master -datadir overrides (clusterOpts.masterDirs)
	// netns, if set, names the network namespace a daemon (by name) or
	// the CLI ("cli") runs in; "" runs it on the host.
	netns func(name string) string
	cwd   string     // the daemons' working directory; "" = the test's
	files []*os.File // clusterOpts.files
}

// command runs the gear binary as name, in its namespace if it has one.
func (c *testCluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if c.netns != nil {
		if ns := c.netns(name); ns != "" {
			return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, gearBin}, args...)...)
		}
	}
	return exec.CommandContext(ctx, gearBin, args...)
}

type clusterOpts struct {
	masters int
	workers int
	conf    string // extra gear.conf lines
	env     []string
	// masterDirs overrides master i's -datadir when masterDirs[i] != ""
	// (e.g. a small tmpfs the test mounted).
	masterDirs []string
	// files are passed to every daemon from fd 3 on, without
	// close-on-exec, as a shell or a supervisor may leave them.
	files []*os.File
}

func newCluster(t *testing.T, o clusterOpts) *testCluster {
	t.Helper()
	dir := t.TempDir()
	c := &testCluster{t: t, dir: dir, procs: map[string]*proc{}, env: o.env, mdirs: o.masterDirs, files: o.files}
	for i := 0; i < o.masters; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		c.masters = append(c.masters, net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip))))
	}
	quoted := make([]string, len(c.masters))
	for i, m := range c.masters {
		quoted[i] = strconv.Quote(m)
	}
	c.conf = filepath.Join(dir, "gear.conf")
	conf := fmt.Sprintf("gear.cluster.masters = [%s]\ngear.log.level = debug\n%s\n", strings.Join(quoted, ", "), o.conf)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)
	for i := range c.masters {
		c.startMaster(i)
	}
	for i := 0; i < o.workers; i++ {
		c.startWorker(i)
	}
	return c
}

func (c *testCluster) start(name string, args ...string) *proc {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := c.command(context.Background(), name, args...)
	cmd.Dir = c.cwd
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "GEAR_CONF="+c.conf), c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.ExtraFiles = c.files
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{t: c.t, name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.procs[name] = p
	return p
}

func (c *testCluster) startMaster(i int) *proc {
	host, port, _ := net.SplitHostPort(c.masters[i])
	dataDir := filepath.Join(c.dir, fmt.Sprintf("master%d", i))
	if i < len(c.mdirs) && c.mdirs[i] != "" {
		dataDir = c.mdirs[i]
	}
	return c.start(fmt.Sprintf("master%d", i), "master", "-ip", host, "-port", port, "-datadir", dataDir)
}

func (c *testCluster) startWorker(i int) *proc {
	return c.start(fmt.Sprintf("worker%d", i), "worker", "-ip", "127.0.0.1",
		"-datadir", filepath.Join(c.dir, fmt.Sprintf("worker%d", i)))
}

// kill sends sig to a daemon (not its executors) and, for SIGKILL, waits.
func (c *testCluster) kill(name string, sig syscall.Signal) {
	c.t.Helper()
	p := c.procs[name]
	_ = p.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			c.t.Fatalf("%s did not exit after %v", name, sig)
		}
	}
}

func (c *testCluster) stopAll() {
	for _, p := range c.procs {
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for name, p := range c.procs {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			c.t.Logf("%s had to be killed", name)
		}
	}
	for name, p := range c.procs {
		if strings.Contains(readFile(c.t, p.log), "DATA RACE") {
			c.t.Errorf("%s reported a data race (log %s)", name, p.log)
		}
	}
	if c.t.Failed() {
		for name, p := range c.procs {
			b, _ := os.ReadFile(p.log)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			c.t.Logf("---- %s log (tail) ----\n%s", name, strings.Join(lines, "\n"))
		}
	}
}

// gear runs the CLI against the cluster.
func (c *testCluster) gear(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.command(ctx, "cli", args...)
	cmd.Env = append(append(os.Environ(), "GEAR_CONF="+c.conf), c.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			c.t.Fatalf("gear %v: %v", args, err)
		}
	}
	return out.String(), errb.String(), code
}

// mustGear runs the CLI and fails the test on a non-zero exit.
func (c *testCluster) mustGear(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.gear(args...)
	if code != 0 {
		c.t.Fatalf("gear %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (c *testCluster) apps() []cluster.App {
	c.t.Helper()
	out, errOut, code := c.gear("app", "list", "-json")
	if code != 0 {
		c.t.Logf("app list: exit %d: %s", code, errOut)
		return nil
	}
	var apps []cluster.App
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		c.t.Fatalf("app list -json: %v\n%s", err, out)
	}
	return apps
}

func (c *testCluster) app(id string) *cluster.App {
	c.t.Helper()
	for _, a := range c.apps() {
		if a.ID == id {
			return &a
		}
	}
	return nil
}

func (c *testCluster) mastersView() []cluster.Master {
	c.t.Helper()
	out, _, code := c.gear("masters", "-json")
	if code != 0 {
		return nil
	}
	var ms []cluster.Master
	_ = json.Unmarshal([]byte(out), &ms)
	return ms
}

func (c *testCluster) leader() string {
	for _, m := range c.mastersView() {
		if m.State == "leader" {
			return m.Addr
		}
	}
	return ""
}

func (c *testCluster) masterName(addr string) string {
	for i, m := range c.masters {
		if m == addr {
			return fmt.Sprintf("master%d", i)
		}
	}
	c.t.Fatalf("no master %s", addr)
	return ""
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead for our purposes.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// runningPIDs returns executor id -> pid when every executor runs.
func runningPIDs(a *cluster.App) map[string]int {
	if a == nil || a.State != cluster.AppRunning {
		return nil
	}
	out := map[string]int{}
	for _, e := range a.Executors {
		if e.State != cluster.Running || e.PID == 0 {
			return nil
		}
		out[e.ID] = e.PID
	}
	return out
}

func example(name string) string { return filepath.Join(repoRoot, "conf/examples", name) }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	return string(b)
}
