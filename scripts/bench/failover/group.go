package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// backend knows how to run and query the members of one consensus system.
// Member indexes are 0..size-1.
type backend interface {
	// name is the system's name in reports ("gear", "etcd").
	name() string
	// command returns the command that starts (or restarts, with the same
	// data dir) member i.
	command(i int) *exec.Cmd
	// status asks member i for its own view of the group.
	status(ctx context.Context, i int) (memberStatus, error)
	// write attempts one committed write through member i; nil means the
	// write was accepted after a quorum committed it.
	write(ctx context.Context, i int) error
}

// memberStatus is one member's view: its own id, the leader it knows of
// ("" = none) and its current term.
type memberStatus struct {
	ID     string
	Leader string
	Term   uint64
}

// size is the number of members in every group the benchmark starts.
const size = 3

// group runs the member processes of one system. It owns them: close kills
// every process it started and waits for it.
type group struct {
	b    backend
	dir  string
	log  *slog.Logger
	mu   sync.Mutex
	proc [size]*proc
}

// proc is one started member process; done is closed once it was reaped.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func newGroup(b backend, dir string, log *slog.Logger) *group {
	return &group{b: b, dir: dir, log: log.With("system", b.name())}
}

// startAll starts every member without waiting for any of them.
func (g *group) startAll() error {
	for i := range size {
		if err := g.start(i); err != nil {
			return err
		}
	}
	return nil
}

// start spawns member i; its output goes to <dir>/member-<i>.log.
func (g *group) start(i int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.proc[i]; p != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s member %d is still running (pid %d)", g.b.name(), i, p.cmd.Process.Pid)
		}
	}
	logPath := filepath.Join(g.dir, fmt.Sprintf("member-%d.log", i))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open member log: %w", err)
	}
	cmd := g.b.command(i)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so a Ctrl-C in the terminal reaches only the
	// benchmark, which then kills the members itself; the parent-death
	// signal is the safety net should the benchmark itself be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s member %d (%s): %w", g.b.name(), i, cmd.Path, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	g.proc[i] = p
	g.log.Debug("member started", "member", i, "pid", cmd.Process.Pid, "log", logPath)
	return nil
}

// pid returns member i's pid, 0 if it is not running.
func (g *group) pid(i int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.proc[i]
	if p == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// signal sends sig to member i.
func (g *group) signal(i int, sig syscall.Signal) error {
	pid := g.pid(i)
	if pid == 0 {
		return fmt.Errorf("%s member %d is not running", g.b.name(), i)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("send %v to %s member %d (pid %d): %w", sig, g.b.name(), i, pid, err)
	}
	return nil
}

// reaped waits until member i's process has been reaped.
func (g *group) reaped(ctx context.Context, i int) error {
	g.mu.Lock()
	p := g.proc[i]
	g.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close kills every running member (SIGKILL also ends a stopped process)
// and waits until each has been reaped.
func (g *group) close() {
	g.mu.Lock()
	procs := g.proc
	g.mu.Unlock()
	for _, p := range procs {
		if p == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			g.log.Error("member did not exit 10 s after SIGKILL", "pid", p.cmd.Process.Pid)
		}
	}
}

// statuses asks every member at once; a member that does not answer has a
// non-nil error in errs.
func (g *group) statuses(ctx context.Context, timeout time.Duration) (sts [size]memberStatus, errs [size]error) {
	var wg sync.WaitGroup
	for i := range size {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			sts[i], errs[i] = g.b.status(cctx, i)
		})
	}
	wg.Wait()
	return sts, errs
}

// healthy reports the leader's index and term when every member answers
// and all of them name the same leader, which is one of them.
func healthy(sts [size]memberStatus, errs [size]error) (leader int, term uint64, ok bool) {
	leader = -1
	for i := range size {
		if errs[i] != nil || sts[i].Leader == "" || sts[i].Leader != sts[0].Leader {
			return -1, 0, false
		}
		if sts[i].ID == sts[i].Leader {
			leader = i
		}
		term = max(term, sts[i].Term)
	}
	if leader < 0 || sts[leader].Term != term {
		return -1, 0, false
	}
	return leader, term, true
}

// waitHealthy polls until the group is healthy (all members up, one leader
// known to all) and returns the leader's index and its status.
func (g *group) waitHealthy(ctx context.Context, timeout time.Duration) (leader int, st memberStatus, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastSts [size]memberStatus
	var lastErrs [size]error
	for {
		sts, errs := g.statuses(ctx, 500*time.Millisecond)
		if l, _, ok := healthy(sts, errs); ok {
			return l, sts[l], nil
		}
		lastSts, lastErrs = sts, errs
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return -1, memberStatus{}, fmt.Errorf("%s group not healthy within %v (statuses %+v, errors %v); see the member logs in %s", g.b.name(), timeout, lastSts, lastErrs, g.dir)
			}
			return -1, memberStatus{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct 127.0.0.1 ports that were free for TCP and,
// when udp is set, for UDP too. Another process may take one before it is
// used; the members then fail to start and the benchmark says so.
func freePorts(n int, udp bool) ([]int, error) {
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("found no free 127.0.0.1 ports after 100 tries")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		if udp {
			pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				continue
			}
			closers = append(closers, pc.Close)
		}
		ports = append(ports, port)
	}
	return ports, nil
}

// newHTTPClient returns the client both systems' probes and writes use:
// keep-alive connections, so that a write's time is not a TCP handshake's.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}
