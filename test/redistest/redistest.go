// Package redistest starts throw-away redis-server processes for tests and
// benchmarks: one process per call, on a free port of 127.0.0.1, with no
// persistence (--save "" --appendonly no), in its own temporary directory.
//
// It is for tests that need a real Redis (pkg/channel and integration tests).
// It is not a Redis fake and not a way to run Redis in production. When the
// redis-server binary is missing, Start fails the test if CI=true and skips it
// otherwise, so a CI machine without Redis cannot pass by skipping.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the redis-server program Start and Launch run. Tests may point it
// elsewhere (e.g. from an environment variable) before starting servers.
var Binary = "redis-server"

// startTimeout bounds how long a fresh redis-server may take to answer PING.
const startTimeout = 15 * time.Second

// Server is one running redis-server process.
type Server struct {
	dir   string
	port  int
	extra []string
	conf  string // sentinel config file; empty for a data server

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start launches a redis-server for the test and stops it when the test ends.
// If redis-server is not installed it calls t.Fatal when CI=true and t.Skip
// otherwise. extraArgs are appended to the command line (e.g.
// "--cluster-enabled", "yes").
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	requireBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := Launch(ctx, t.TempDir(), extraArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("redistest: stop: %v", err)
		}
	})
	return s
}

// requireBinary fails (CI=true) or skips the test when redis-server is
// missing.
func requireBinary(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		msg := fmt.Sprintf("redistest: %s not found in PATH (install it: apt-get install -y redis-server): %v", Binary, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// Launch starts a redis-server whose files live in dir and waits until it
// answers PING or ctx ends. The caller must call Stop. It is the non-test
// entry point (used by benchmarks).
func Launch(ctx context.Context, dir string, extraArgs ...string) (*Server, error) {
	return launch(ctx, dir, nil, extraArgs)
}

// LaunchSentinel starts a Redis Sentinel (redis-server --sentinel) that
// monitors masterAddr under name with quorum 1, declares it down after 500ms
// and fails over to a replica. The caller must call Stop.
func LaunchSentinel(ctx context.Context, dir, masterAddr, name string) (*Server, error) {
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		return nil, fmt.Errorf("redistest: sentinel master address: %w", err)
	}
	return launch(ctx, dir, func(s *Server) error {
		s.conf = filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", s.port))
		conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 1\n"+
			"sentinel down-after-milliseconds %[1]s 500\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", name, host, port)
		return os.WriteFile(s.conf, []byte(conf), 0o600)
	}, nil)
}

// StartSentinel is LaunchSentinel for a test; see Start for the rules when
// redis-server is missing.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	requireBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := LaunchSentinel(ctx, t.TempDir(), master.Addr(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("redistest: stop sentinel: %v", err)
		}
	})
	return s
}

func launch(ctx context.Context, dir string, prepare func(*Server) error, extraArgs []string) (*Server, error) {
	var lastErr error
	// A free port found by listening on :0 can be taken by someone else
	// before redis binds it: retry a few times with a new port.
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{dir: dir, port: port, extra: extraArgs}
		if prepare != nil {
			if err := prepare(s); err != nil {
				return nil, fmt.Errorf("redistest: prepare: %w", err)
			}
		}
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// Addr is the server's host:port on 127.0.0.1.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and waits for
// it to exit. Stopping a stopped server is a no-op. All data is lost.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// Restart stops the server and starts a new one on the same port, with an
// empty data set (there is no persistence). It waits until PING works.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return s.startLocked(ctx)
}

func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(ctx)
}

func (s *Server) logPath() string {
	return filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.port))
}

func (s *Server) startLocked(ctx context.Context) error {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", s.logPath(),
		"--daemonize", "no",
		"--dbfilename", fmt.Sprintf("dump-%d.rdb", s.port),
	)
	if contains(s.extra, "--cluster-enabled") {
		args = append(args, "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", s.port))
	}
	args = append(args, s.extra...)
	cmd := exec.Command(Binary, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s: %w", Binary, err)
	}
	done := make(chan struct{})
	go func() { // owned by Server: ends when the process exits (Stop waits for it)
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("redistest: redis-server on port %d exited during start: %v\n%s", s.port, err, s.logTail())
		case <-ctx.Done():
			_ = s.stopLocked()
			return fmt.Errorf("redistest: redis-server on port %d: %w (last PING error: %v)\n%s", s.port, ctx.Err(), err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stopLocked()
			return fmt.Errorf("redistest: redis-server on port %d did not answer PING within %v: %v\n%s", s.port, startTimeout, err, s.logTail())
		}
	}
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	// Wait until the port no longer answers, so a Restart cannot talk to
	// the old process.
	deadline := time.Now().Add(5 * time.Second)
	for ping(s.Addr()) == nil {
		if time.Now().After(deadline) {
			return errors.New("redistest: old redis-server still answers after stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return "(no redis log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "redis log tail:\n" + string(b)
}

// ping sends one RESP PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
