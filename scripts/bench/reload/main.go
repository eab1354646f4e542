// Command reload measures what a client sees while a server of 4 instances
// is restarted one instance at a time: connections refused, reset or
// otherwise failed, and the client's latency (p50, p99, max), for a
// closed-loop HTTP client (one request at a time, a new connection each)
// that runs through the whole restart. In the same run:
//
//   - gear: conf/examples/hello (pkg/activation) with listen = [PORT],
//     4 instances on one worker, `gear app restart` (rolling, each new
//     instance waited on until its health check passes);
//   - PM2 cluster mode: a Node http server, `pm2 start -i 4`, `pm2 reload`
//     (PM2 from npm: `npm install pm2` in a directory given by -pm2, or pm2
//     in PATH);
//   - runit: the same Go server binding its port itself under runsv (one
//     instance: runit has no way to share a port between services), and
//     `sv restart` 4 times in a row, each once it serves again (Debian
//     package runit).
//
// A system that is not installed is skipped with a note.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

var (
	rounds  = flag.Int("rounds", 3, "restarts measured per system")
	pm2Dir  = flag.String("pm2", "", "directory where `npm install pm2` was run (default: pm2 in PATH, else /tmp/gear-bench-pm2 when it has one)")
	verbose = flag.Bool("v", false, "log progress and each failed request")
	only    = flag.String("only", "", "run only the systems whose name starts with this (gear, PM2, runit)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reload:", err)
		os.Exit(1)
	}
}

// result is one restart under load.
type result struct {
	ok, refused, reset, other int
	lat                       []time.Duration
	took                      time.Duration
}

func (r *result) add(o result) {
	r.ok += o.ok
	r.refused += o.refused
	r.reset += o.reset
	r.other += o.other
	r.lat = append(r.lat, o.lat...)
	r.took += o.took
}

func logf(format string, a ...any) {
	if *verbose {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

func run() error {
	tmp, err := os.MkdirTemp("", "gear-bench-reload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root, err := repoRoot()
	if err != nil {
		return err
	}
	gearBin := filepath.Join(tmp, "gear")
	hello := filepath.Join(tmp, "hello")
	for _, b := range [][2]string{{gearBin, "."}, {hello, "./conf/examples/hello"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", b[1], err, out)
		}
	}
	type system struct {
		name  string
		setup func() (restart func() (result, error), stop func(), err error)
	}
	systems := []system{{"gear (listen, rolling restart)", func() (func() (result, error), func(), error) {
		return setupGear(tmp, gearBin, hello)
	}}}
	if pm2 := findPM2(); pm2 != "" {
		systems = append(systems, system{"PM2 cluster mode (pm2 reload)", func() (func() (result, error), func(), error) {
			return setupPM2(tmp, pm2)
		}})
	} else {
		fmt.Println("note: pm2 not found (npm install pm2, then -pm2 DIR): skipped")
	}
	if _, err := exec.LookPath("runsv"); err == nil {
		systems = append(systems, system{"runit (sv restart x4)", func() (func() (result, error), func(), error) {
			return setupRunit(tmp, hello)
		}})
	} else {
		fmt.Println("note: runit not installed (apt-get install -y runit): skipped")
	}
	fmt.Printf("restart of 4 instances under a closed-loop HTTP client (new connection per request), %d round(s) each\n\n", *rounds)
	fmt.Printf("%-32s %8s %8s %6s %6s %9s %9s %9s %9s\n", "system", "requests", "refused", "reset", "other", "p50", "p99", "max", "restart")
	for _, s := range systems {
		if !strings.HasPrefix(s.name, *only) {
			continue
		}
		restart, stop, err := s.setup()
		if err != nil {
			fmt.Printf("%-32s error: %v\n", s.name, err)
			continue
		}
		var total result
		for i := 0; i < *rounds; i++ {
			r, err := restart()
			if err != nil {
				fmt.Printf("%-32s round %d: error: %v\n", s.name, i+1, err)
				break
			}
			total.add(r)
		}
		stop()
		slices.Sort(total.lat)
		fmt.Printf("%-32s %8d %8d %6d %6d %9s %9s %9s %9s\n", s.name, total.ok+total.refused+total.reset+total.other,
			total.refused, total.reset, total.other, ms(pct(total.lat, 50)), ms(pct(total.lat, 99)), ms(pct(total.lat, 100)),
			(total.took / time.Duration(max(*rounds, 1))).Round(time.Millisecond))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)]
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run from inside the gear repository")
		}
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// underLoad runs a closed-loop client against url while restart runs.
func underLoad(url string, restart func() error) (result, error) {
	var r result
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			resp, err := client.Get(url)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			d := time.Since(t0)
			mu.Lock()
			switch {
			case err == nil:
				r.ok++
				r.lat = append(r.lat, d)
			case errors.Is(err, syscall.ECONNREFUSED):
				r.refused++
				time.Sleep(time.Millisecond) // a refusal returns at once: do not spin
			case errors.Is(err, syscall.ECONNRESET):
				r.reset++
			default:
				r.other++
				logf("%s request error after %v: %v", time.Now().Format("15:04:05.000"), d, err)
			}
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond) // some requests before the restart: the baseline latency
	t0 := time.Now()
	err := restart()
	took := time.Since(t0)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	r.took = took
	return r, err
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not served within %v", url, timeout)
}

// ---- gear ----

func setupGear(tmp, gearBin, hello string) (func() (result, error), func(), error) {
	dir, err := os.MkdirTemp(tmp, "gear-")
	if err != nil {
		return nil, nil, err
	}
	mport, port := freePort(), freePort()
	master := "127.0.0.1:" + strconv.Itoa(mport)
	conf := filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("gear.cluster.masters = [%q]\ngear.log.level = warn\n", master)), 0o644); err != nil {
		return nil, nil, err
	}
	env := append(os.Environ(), "GEAR_CONF="+conf)
	var daemons []*exec.Cmd
	stop := func() {
		gear(env, gearBin, "app", "kill", "1")
		time.Sleep(2 * time.Second)
		for _, d := range slices.Backward(daemons) {
			d.Process.Signal(syscall.SIGTERM)
			d.Wait()
		}
	}
	start := func(args ...string) error {
		cmd := exec.Command(gearBin, args...)
		cmd.Env = env
		logf, err := os.Create(filepath.Join(dir, args[0]+".log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		daemons = append(daemons, cmd)
		return nil
	}
	if err := start("master", "-ip", "127.0.0.1", "-port", strconv.Itoa(mport), "-datadir", filepath.Join(dir, "m")); err != nil {
		return nil, nil, err
	}
	if err := start("worker", "-ip", "127.0.0.1", "-datadir", filepath.Join(dir, "w")); err != nil {
		stop()
		return nil, nil, err
	}
	bundleDir := filepath.Join(dir, "bundle")
	os.MkdirAll(bundleDir, 0o755)
	manifest := fmt.Sprintf(`name = "web"
processes {
  web {
    command = ["./hello"]
    instances = 4
    listen = [%d]
    stop-timeout = 10s
    health { http = "/", interval = 200ms, timeout = 1s, failures = 3, grace = 5s }
  }
}
`, port)
	b, err := os.ReadFile(hello)
	if err != nil {
		stop()
		return nil, nil, err
	}
	os.WriteFile(filepath.Join(bundleDir, "gear-app.conf"), []byte(manifest), 0o644)
	os.WriteFile(filepath.Join(bundleDir, "hello"), b, 0o755)
	bundle := filepath.Join(dir, "web.tar.gz")
	if out, err := exec.Command("tar", "-C", bundleDir, "-czf", bundle, "gear-app.conf", "hello").CombinedOutput(); err != nil {
		stop()
		return nil, nil, fmt.Errorf("tar: %v: %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := gear(env, gearBin, "app", "submit", bundle, "-quiet"); err == nil {
			break
		} else if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("submit: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := waitGear(env, gearBin, nil, 90*time.Second); err != nil {
		stop()
		return nil, nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	restart := func() (result, error) {
		before, err := waitGear(env, gearBin, nil, 60*time.Second)
		if err != nil {
			return result{}, err
		}
		return underLoad(url, func() error {
			if _, err := gear(env, gearBin, "app", "restart", "1"); err != nil {
				return err
			}
			_, err := waitGear(env, gearBin, before, 120*time.Second)
			return err
		})
	}
	return restart, stop, nil
}

func gear(env []string, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("gear %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
	}
	return out, err
}

// waitGear waits until app 1 has 4 RUNNING executors passing their health
// checks, none of them with a pid in not, and returns their pids.
func waitGear(env []string, bin string, not map[int]bool, timeout time.Duration) (map[int]bool, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, err := gear(env, bin, "app", "info", "1", "-json")
		var a cluster.App
		if err == nil && json.Unmarshal(out, &a) == nil && len(a.Executors) == 4 {
			pids := map[int]bool{}
			for _, e := range a.Executors {
				if e.State == cluster.Running && e.Health == cluster.HealthPassing && !not[e.PID] && e.PID > 0 {
					pids[e.PID] = true
				}
			}
			if len(pids) == 4 {
				return pids, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("gear: app 1 not 4 healthy new instances within %v", timeout)
}

// ---- PM2 ----

const nodeServer = `const http = require('http');
const server = http.createServer((req, res) => { res.end('hello from ' + process.pid + '\n'); });
server.listen(parseInt(process.env.PORT, 10), () => { if (process.send) process.send('ready'); });
process.on('SIGINT', () => { server.close(() => process.exit(0)); });
`

func findPM2() string {
	if *pm2Dir != "" {
		return filepath.Join(*pm2Dir, "node_modules", ".bin", "pm2")
	}
	if p, err := exec.LookPath("pm2"); err == nil {
		return p
	}
	if p := "/tmp/gear-bench-pm2/node_modules/.bin/pm2"; fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func setupPM2(tmp, pm2Bin string) (func() (result, error), func(), error) {
	home, err := os.MkdirTemp(tmp, "pm2-")
	if err != nil {
		return nil, nil, err
	}
	port := freePort()
	script := filepath.Join(home, "server.js")
	if err := os.WriteFile(script, []byte(nodeServer), 0o644); err != nil {
		return nil, nil, err
	}
	env := append(os.Environ(), "PM2_HOME="+filepath.Join(home, ".pm2"), "PORT="+strconv.Itoa(port))
	pm2 := func(a ...string) error {
		c := exec.Command(pm2Bin, a...)
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("pm2 %s: %v: %s", strings.Join(a, " "), err, out)
		}
		return nil
	}
	stop := func() { pm2("kill") }
	if err := pm2("start", script, "--name", "web", "-i", "4", "--wait-ready", "--listen-timeout", "10000", "--kill-timeout", "10000"); err != nil {
		stop()
		return nil, nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := waitHTTP(url, 30*time.Second); err != nil {
		stop()
		return nil, nil, err
	}
	restart := func() (result, error) {
		return underLoad(url, func() error { return pm2("reload", "web") })
	}
	return restart, stop, nil
}

// ---- runit ----

func setupRunit(tmp, hello string) (func() (result, error), func(), error) {
	dir, err := os.MkdirTemp(tmp, "runit-")
	if err != nil {
		return nil, nil, err
	}
	port := freePort()
	script := fmt.Sprintf("#!/bin/sh\nPORT=%d exec %s 2>/dev/null\n", port, hello)
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte(script), 0o755); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("runsv", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() {
		exec.Command("sv", "-w", "15", "down", dir).Run()
		if f, err := os.OpenFile(filepath.Join(dir, "supervise", "control"), os.O_WRONLY, 0); err == nil {
			f.WriteString("x")
			f.Close()
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := waitHTTP(url, 30*time.Second); err != nil {
		stop()
		return nil, nil, err
	}
	restart := func() (result, error) {
		return underLoad(url, func() error {
			for i := 0; i < 4; i++ {
				if out, err := exec.Command("sv", "-w", "15", "restart", dir).CombinedOutput(); err != nil {
					return fmt.Errorf("sv restart: %v: %s", err, out)
				}
				if err := waitHTTP(url, 15*time.Second); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return restart, stop, nil
}
