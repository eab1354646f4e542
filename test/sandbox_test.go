package test

// Executors get only what they should (issue 17): the environment is built
// from an allow-list, so the worker's GEAR_TOKEN and gossip key never reach
// them; each instance runs in its own working directory holding the
// bundle's files, so what one writes reaches neither another instance nor
// the shared unpacked bundle; with gear.worker.user they run as that
// unprivileged user, who can read the bundle but not the worker's data
// dir. And with a cluster token, every read needs it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

const sandboxToken = "t0ken-in-the-worker-env"

// sandboxScript records what the executor sees, writes into its working
// directory (a new file, and the bundle's data.txt), and, when it is not
// root, tries to write into the shared bundle and to list the worker's
// data dir.
const sandboxScript = `#!/bin/sh
echo "$GEAR_EXECUTOR_ID" > mine.txt
echo "$GEAR_EXECUTOR_ID" >> data.txt
if [ "$(id -u)" != 0 ]; then
  if echo x > "$GEAR_BUNDLE_DIR/intruder.txt" 2>/dev/null; then echo yes; else echo no; fi > bundle-writable.txt
  if cat "$GEAR_BUNDLE_DIR/data.txt" "$GEAR_BUNDLE" >/dev/null 2>&1; then echo yes; else echo no; fi > bundle-readable.txt
  if ls "$WORKER_DATADIR" >/dev/null 2>&1; then echo yes; else echo no; fi > datadir-readable.txt
  if cat "$WORKER_DATADIR/worker-secret" >/dev/null 2>&1; then echo yes; else echo no; fi > secret-readable.txt
fi
echo done > ready.txt
exec sleep 1000
`

func sandboxBundle(t *testing.T, workerData string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sandbox.tar.gz")
	writeTarGz(t, path, map[string]string{
		"gear-app.conf": fmt.Sprintf("name = \"sandbox\"\nprocesses {\n  main {\n    command = [\"./run.sh\"]\n    instances = 2\n    env { WORKER_DATADIR = %q }\n  }\n}\n", workerData),
		"run.sh":        sandboxScript,
		"data.txt":      "from the bundle\n",
	})
	return path
}

// environOf reads /proc/PID/environ.
func environOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

func sandboxCluster(t *testing.T, conf string) *testCluster {
	t.Helper()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: conf,
		env: []string{"GEAR_TOKEN=" + sandboxToken, "GEAR_GOSSIP_KEY=" + key, "AWS_SECRET_ACCESS_KEY=not-for-apps", "LANG=C.UTF-8", "LC_ALL=C"}})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	waitFor(t, 20*time.Second, "the worker to register (its heartbeats carry the token)", func() bool { return len(c.aliveWorkers()) == 1 })
	return c
}

// runSandbox submits the sandbox bundle and returns its executors once
// each has written ready.txt in its working directory.
func runSandbox(t *testing.T, c *testCluster) (string, []cluster.Executor) {
	t.Helper()
	workerData := filepath.Join(c.dir, "worker0")
	id := c.submit(sandboxBundle(t, workerData))
	a := c.waitRunning(id, 2, 60*time.Second)
	for _, e := range a.Executors {
		waitFor(t, 20*time.Second, "executor "+e.ID+" to write ready.txt", func() bool {
			cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", e.PID))
			if err != nil {
				return false
			}
			_, err = os.Stat(filepath.Join(cwd, "ready.txt"))
			return err == nil
		})
	}
	return id, a.Executors
}

func TestExecutorSandbox(t *testing.T) {
	c := sandboxCluster(t, "")
	id, execs := runSandbox(t, c)
	cwds := map[string]bool{}
	var bundleDir string
	for _, e := range execs {
		env := environOf(t, e.PID)
		for _, k := range []string{"GEAR_TOKEN", "GEAR_GOSSIP_KEY", "AWS_SECRET_ACCESS_KEY", "GEAR_CONF"} {
			if v, ok := env[k]; ok {
				t.Errorf("executor %s has %s=%q in its environment", e.ID, k, v)
			}
		}
		for k, want := range map[string]string{"GEAR_APP_ID": id, "GEAR_EXECUTOR_ID": e.ID, "LANG": "C.UTF-8", "LC_ALL": "C", "PATH": os.Getenv("PATH"), "WORKER_DATADIR": filepath.Join(c.dir, "worker0")} {
			if env[k] != want {
				t.Errorf("executor %s: %s=%q, want %q", e.ID, k, env[k], want)
			}
		}
		for _, v := range env {
			if strings.Contains(v, sandboxToken) {
				t.Errorf("executor %s: the token is in its environment: %q", e.ID, v)
			}
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", e.PID))
		if err != nil {
			t.Fatal(err)
		}
		cwds[cwd] = true
		bundleDir = env["GEAR_BUNDLE_DIR"]
		if cwd == bundleDir {
			t.Fatalf("executor %s runs in the shared bundle dir %s", e.ID, cwd)
		}
		if got := strings.TrimSpace(readFile(t, filepath.Join(cwd, "mine.txt"))); got != e.ID {
			t.Errorf("executor %s: mine.txt in its cwd holds %q: another instance wrote it", e.ID, got)
		}
		if got := readFile(t, filepath.Join(cwd, "data.txt")); got != "from the bundle\n"+e.ID+"\n" {
			t.Errorf("executor %s: data.txt in its cwd holds %q, want the bundle's line and its own", e.ID, got)
		}
	}
	if len(cwds) != 2 {
		t.Fatalf("the two instances share a working directory: %v", cwds)
	}
	if got := readFile(t, filepath.Join(bundleDir, "data.txt")); got != "from the bundle\n" {
		t.Errorf("the shared unpacked bundle's data.txt changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(bundleDir, "mine.txt")); err == nil {
		t.Errorf("mine.txt reached the shared unpacked bundle %s", bundleDir)
	}
	if fi, err := os.Stat(filepath.Join(bundleDir, "data.txt")); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("the shared unpacked bundle is not read-only: %v %v", fi.Mode(), err)
	}

	// The working directory is kept across a restart of the executor.
	e := execs[0]
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", e.PID))
	if err := os.WriteFile(filepath.Join(cwd, "kept.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("kill", "-9", strconv.Itoa(e.PID)).Run()
	waitFor(t, 30*time.Second, "executor "+e.ID+" restarted", func() bool {
		a := c.appInfo(id)
		for _, x := range a.Executors {
			if x.ID == e.ID && x.State == cluster.Running && x.PID != e.PID && alive(x.PID) {
				got, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", x.PID))
				return got == cwd
			}
		}
		return false
	})
	if _, err := os.Stat(filepath.Join(cwd, "kept.txt")); err != nil {
		t.Errorf("the working directory was not kept across the restart: %v", err)
	}
	// ... and removed once the executor is gone.
	c.mustGear("app", "scale", id, "1")
	gone := filepath.Join(c.dir, "worker0", "run", id+".main.1")
	waitFor(t, 30*time.Second, "the scaled-away executor's working directory to be removed", func() bool {
		_, err := os.Stat(gone)
		return os.IsNotExist(err)
	})
}

// TestReadsNeedToken: with gear.auth.token set, reads, logs and bundle
// downloads answer 401 without it (saying how to pass it); /ecv stays open;
// the CLI with the token works, also for logs proxied to the worker.
func TestReadsNeedToken(t *testing.T) {
	c := sandboxCluster(t, "")
	id, execs := runSandbox(t, c)
	base := "http://" + c.masters[0]
	a := c.appInfo(id)
	get := func(url, token string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/api/v1/apps", "/api/v1/apps/" + id, "/api/v1/apps/" + id + "/logs", "/api/v1/workers",
		"/api/v1/masters", "/api/v1/status", "/api/v1/bundles", "/api/v1/bundles/" + a.Bundle.Digest, "/metrics"} {
		for _, tok := range []string{"", "wrong"} {
			code, body := get(base+p, tok)
			if code != http.StatusUnauthorized || !strings.Contains(body, "GEAR_TOKEN") || !strings.Contains(body, "-token") {
				t.Errorf("GET %s with token %q: %d %s; want 401 saying how to pass the token", p, tok, code, body)
			}
		}
		if code, body := get(base+p, sandboxToken); code != 200 {
			t.Errorf("GET %s with the token: %d %s", p, code, body)
		}
	}
	if code, body := get(base+"/ecv", ""); code != 200 {
		t.Errorf("/ecv without a token: %d %s; load balancers poll it", code, body)
	}
	w := c.aliveWorkers()[0]
	if code, _ := get("http://"+w.Addr+"/logs/"+execs[0].ID, ""); code != http.StatusUnauthorized {
		t.Errorf("the worker's log route without a token: %d, want 401", code)
	}
	// A kill without the token changes nothing.
	resp, err := http.Post(base+"/api/v1/apps/"+id+"/kill", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || c.appInfo(id).State != cluster.AppRunning {
		t.Errorf("kill without the token: %s, app %s", resp.Status, c.appInfo(id).State)
	}
	// The CLI without a token is refused with the hint; with it, logs
	// (proxied by the master to the worker's log route) work.
	cmd := exec.Command(gearBin, "app", "list")
	cmd.Env = append(os.Environ(), "GEAR_CONF="+c.conf, "GEAR_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "GEAR_TOKEN") {
		t.Errorf("gear app list without a token: %v %s; want a refusal naming GEAR_TOKEN", err, out)
	}
	c.mustGear("logs", id)

	// A forged submit: the uploaded bundle with a command of the
	// submitter's choosing. The master reads the stored bundle's
	// gear-app.conf itself and refuses it, naming the difference.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := cluster.NewClient(c.masters, sandboxToken)
	_, err = client.Submit(ctx, cluster.SubmitRequest{Name: "forged", Bundle: a.Bundle,
		Processes: []cluster.Process{{Name: "main", Command: []string{"/bin/sh", "-c", "echo owned"}, Instances: 1}}})
	var ae *cluster.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, `process group "main": command is ["/bin/sh","-c","echo owned"] in the submit but ["./run.sh"]`) {
		t.Errorf("forged submit: %v; want 400 naming the command", err)
	}
	if n := len(c.apps()); n != 1 {
		t.Errorf("%d apps after the forged submit, want 1", n)
	}
}

// TestExecutorUser: with gear.worker.user the executors run as that user
// and group; they can read the bundle (and run in their own directory) but
// cannot write into the shared bundle nor read the worker's data dir.
func TestExecutorUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestExecutorUser needs root (CI runs as root)")
		}
		t.Skip("needs root to switch users")
	}
	const name = "geartest"
	if _, err := exec.Command("id", name).CombinedOutput(); err != nil {
		needProgram(t, "useradd")
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v %s", name, err, out)
		}
	}
	uid := strings.TrimSpace(mustRun(t, "id", "-u", name))
	gid := strings.TrimSpace(mustRun(t, "id", "-g", name))
	c := sandboxCluster(t, "gear.worker.user = \""+name+"\"\n")
	// The executor must reach its working directory under the worker's
	// data dir: the test's temp dirs are 0700.
	for d := c.dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	_, execs := runSandbox(t, c)
	for _, e := range execs {
		st := readFile(t, fmt.Sprintf("/proc/%d/status", e.PID))
		if !strings.Contains(st, "\nUid:\t"+uid+"\t") || !strings.Contains(st, "\nGid:\t"+gid+"\t") {
			t.Errorf("executor %s does not run as %s (%s:%s):\n%s", e.ID, name, uid, gid, st)
		}
		if g := grepLine(st, "Groups:"); strings.TrimSpace(strings.TrimPrefix(g, "Groups:")) != "" {
			t.Errorf("executor %s keeps supplementary groups: %q", e.ID, g)
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", e.PID))
		for file, want := range map[string]string{"bundle-writable.txt": "no", "bundle-readable.txt": "yes", "datadir-readable.txt": "no", "secret-readable.txt": "no"} {
			if got := strings.TrimSpace(readFile(t, filepath.Join(cwd, file))); got != want {
				t.Errorf("executor %s: %s = %q, want %q", e.ID, file, got, want)
			}
		}
		if got := strings.TrimSpace(readFile(t, filepath.Join(cwd, "mine.txt"))); got != e.ID {
			t.Errorf("executor %s could not write into its own working directory: mine.txt = %q", e.ID, got)
		}
		env := environOf(t, e.PID)
		if env["USER"] != name || env["LOGNAME"] != name {
			t.Errorf("executor %s: USER=%q LOGNAME=%q, want %s", e.ID, env["USER"], env["LOGNAME"], name)
		}
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func grepLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestTokenThroughFollowers: with a token, a follower forwards reads and
// writes to the leader with the caller's token, and `gear masters` sees
// every master (each asks the others for their status with the token).
func TestTokenThroughFollowers(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, env: []string{"GEAR_TOKEN=" + sandboxToken}})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	var follower string
	for _, m := range c.masters {
		if m != leader {
			follower = m
		}
	}
	waitFor(t, 20*time.Second, "every master to answer `gear masters` as leader or follower", func() bool {
		ms := c.mastersView()
		if len(ms) != 3 {
			return false
		}
		for _, m := range ms {
			if m.State != "leader" && m.State != "follower" {
				return false
			}
		}
		return true
	})
	out := c.mustGear("-master", follower, "app", "submit", example("hello.tar.gz"), "-quiet", "-executors", "0")
	id := strings.TrimSpace(out)
	for _, tok := range []string{"", "wrong", sandboxToken} {
		req, _ := http.NewRequest("GET", "http://"+follower+"/api/v1/apps/"+id, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if tok == sandboxToken {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("GET app %s on follower %s with token %q: %s, want %d", id, follower, tok, resp.Status, want)
		}
	}
}
