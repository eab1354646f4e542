package procs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rotateEvery is how often a watched process's log size is checked.
const rotateEvery = time.Second

// groupPoll is how often Stop checks whether a process group has emptied.
const groupPoll = 20 * time.Millisecond

// ExitStatus says how a process ended.
type ExitStatus struct {
	// Known is false for an adopted process: it is not this worker's
	// child, so its exit code cannot be collected.
	Known bool
	// Code is the exit code, or -1 when the process was killed by a signal.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
	// OOM: the kernel killed it at its memory limit (MemoryLimit bytes,
	// Spec.Memory).
	OOM         bool
	MemoryLimit int64
}

// Success reports a known exit with code 0.
func (e ExitStatus) Success() bool { return e.Known && e.Code == 0 && e.Signal == 0 }

func (e ExitStatus) String() string {
	switch {
	case !e.Known:
		return "exited (status unknown: not a child of this worker)"
	case e.OOM && e.Signal == 0:
		return fmt.Sprintf("out of memory: killed by the kernel at its memory limit of %d bytes", e.MemoryLimit)
	case e.OOM:
		return fmt.Sprintf("out of memory: killed by signal %d (%s) at its memory limit of %d bytes", int(e.Signal), unix.SignalName(e.Signal), e.MemoryLimit)
	case e.Signal != 0:
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), unix.SignalName(e.Signal))
	default:
		return fmt.Sprintf("exit status %d", e.Code)
	}
}

func exitStatusOf(ps *os.ProcessState) ExitStatus {
	if ps == nil {
		return ExitStatus{}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{Known: true, Code: ps.ExitCode()}
	}
	if ws.Signaled() {
		return ExitStatus{Known: true, Code: -1, Signal: ws.Signal()}
	}
	return ExitStatus{Known: true, Code: ws.ExitStatus()}
}

// Process is one running (or finished) executor process: either started by
// Start, or adopted from a pid file by Adopt. Its methods are safe for
// concurrent use.
type Process struct {
	pid        int
	pgid       int
	startTicks uint64
	startedAt  time.Time
	adopted    bool

	done   chan struct{} // closed once the process has exited
	status ExitStatus    // valid after done

	mu       sync.Mutex
	spec     Spec
	stopping bool
	rotating bool // a log rotation loop runs
	// cg is the process's cgroup when it has limits (cgroup.go).
	cg *cgroup
}

// Start launches spec.Command in its own process group, pinned to spec.CPUs,
// with stdout and stderr appended to spec.LogFile() and a pid file in
// spec.PidDir. It fails without starting anything when the spec is invalid
// or a port of spec.Ports is busy. The process gets no parent-death signal:
// it keeps running if the worker dies.
func Start(spec Spec) (*Process, error) {
	spec = spec.withDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := CheckPorts(spec.Ports); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	out, err := openLog(spec)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	defer out.Close() // the child holds its own descriptor
	if spec.PidDir != "" {
		if err := os.MkdirAll(spec.PidDir, 0o755); err != nil {
			return nil, fmt.Errorf("start %s: create pid dir: %w", spec.ID, err)
		}
	}

	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	if len(spec.Listeners) > 0 {
		if err := throughShim(cmd, spec); err != nil {
			return nil, err
		}
	}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: spec.Credential}
	var cg *cgroup
	if spec.Memory > 0 || spec.MaxPids > 0 {
		if cg, err = newCgroup(spec); err != nil {
			return nil, fmt.Errorf("start %s: memory/max-pids limits: %w", spec.ID, err)
		}
		err = startInCgroup(cmd, cg, spec.CPUs)
	} else {
		err = startPinned(cmd, spec.CPUs)
	}
	if err != nil {
		if cg != nil {
			cg.remove()
		}
		if ee := execError(spec.Command[0], spec.Dir, err); ee != nil {
			return nil, ee
		}
		return nil, fmt.Errorf("start %s: %w (check the command and its directory)", spec.ID, err)
	}
	p := &Process{
		pid:       cmd.Process.Pid,
		pgid:      cmd.Process.Pid,
		startedAt: time.Now(),
		done:      make(chan struct{}),
		spec:      spec,
		cg:        cg,
	}
	// The child cannot have exited and been reaped yet: only cmd.Wait reaps it.
	if st, err := readStat(p.pid); err == nil {
		p.startTicks = st.startTicks
	}
	var pidErr error
	if spec.PidDir != "" {
		pidErr = writePidFile(spec.PidFile(), p.pid, p.startTicks)
	}
	go p.reap(cmd)
	p.startRotation()
	if pidErr != nil {
		// Without a pid file the process could not be adopted later: do not
		// leave it running unknown to the next worker.
		p.Stop(context.Background(), true)
		return nil, fmt.Errorf("start %s: %w", spec.ID, pidErr)
	}
	return p, nil
}

// ExecError says why a command could not be executed, and what to do. It
// matches ErrExec and unwraps to the system error.
type ExecError struct {
	Command string // the program as given (Spec.Command[0])
	Err     error  // the cause: exec.ErrNotFound, or an errno such as ENOENT
	Hint    string
}

func (e *ExecError) Error() string {
	msg := e.Err.Error()
	if errors.Is(e.Err, exec.ErrNotFound) {
		msg = "not found in PATH"
	}
	return fmt.Sprintf("exec %s: %s (%s)", e.Command, msg, e.Hint)
}

// Is makes errors.Is(err, ErrExec) true.
func (e *ExecError) Is(target error) bool { return target == ErrExec }

func (e *ExecError) Unwrap() error { return e.Err }

// execError classifies a failed cmd.Start: an *ExecError for the failures
// that retrying cannot fix (ENOENT, ENOTDIR, EACCES, ENOEXEC, ELOOP from
// fork/exec, or a bare name not found in PATH), nil for anything else (e.g.
// EAGAIN when the machine is out of processes).
func execError(command, dir string, err error) error {
	const where = "the command must exist in the bundle dir or PATH"
	var errno syscall.Errno
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return &ExecError{command, exec.ErrNotFound, where + `; write a program of the bundle as "./` + filepath.Base(command) + `"`}
	case errors.Is(err, exec.ErrDot):
		return &ExecError{command, exec.ErrDot, `write a program of the bundle as "./` + filepath.Base(command) + `"`}
	case !errors.As(err, &errno):
		return nil
	}
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR:
		// ENOENT also comes from a missing #! interpreter (or working
		// directory) of a program that is there.
		path := command
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if strings.Contains(command, "/") {
			if st, serr := os.Stat(path); serr == nil && st.Mode().IsRegular() {
				return &ExecError{command, errno, "the file is there: the interpreter on its #! line, or the working directory " + dir + ", is missing"}
			}
		}
		return &ExecError{command, errno, where}
	case syscall.EACCES, syscall.EPERM:
		return &ExecError{command, errno, "it must be an executable file (chmod +x) in directories this worker may enter"}
	case syscall.ENOEXEC:
		return &ExecError{command, errno, "not a program this machine can run: build it for this OS and CPU, or start a script with a #! line"}
	case syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EISDIR:
		return &ExecError{command, errno, where}
	}
	return nil
}

// startPinned starts cmd with the CPU affinity cpus from its first
// instruction: it forks from a locked OS thread whose mask is set to cpus for
// the duration of the fork.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	return startPinnedHook(cmd, cpus, nil, nil)
}

// startPinnedHook is startPinned with enter run on the locked thread
// before the fork and leave after it (a v1 cgroup, see cgroup.go). A
// thread that cannot be restored stays locked: it is destroyed when its
// goroutine returns, so no other goroutine ever runs in its state.
func startPinnedHook(cmd *exec.Cmd, cpus []int, enter, leave func() error) error {
	if len(cpus) == 0 && enter == nil {
		return cmd.Start()
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var old unix.CPUSet
		if len(cpus) > 0 {
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				runtime.UnlockOSThread()
				errc <- fmt.Errorf("read cpu affinity: %w", err)
				return
			}
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				runtime.UnlockOSThread()
				errc <- fmt.Errorf("pin to cpus %s: %w", FormatCPUList(cpus), err)
				return
			}
		}
		if enter != nil {
			if err := enter(); err != nil {
				errc <- err // stays locked: it may be half in the cgroup
				return
			}
		}
		err := cmd.Start()
		if enter != nil {
			if lerr := leave(); lerr != nil {
				errc <- err
				return
			}
		}
		if len(cpus) > 0 {
			if rerr := unix.SchedSetaffinity(0, &old); rerr != nil {
				errc <- err
				return
			}
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

func (p *Process) reap(cmd *exec.Cmd) {
	// Wait in the poller until the child has exited, so that cmd.Wait,
	// which blocks its thread in the kernel, only collects the status.
	// Without a pidfd (kernels before 5.3) cmd.Wait waits on its own.
	if pidfd, err := unix.PidfdOpen(p.pid, 0); err == nil {
		_ = awaitExit(pidfd)
	}
	_ = cmd.Wait() // the error only repeats the exit status
	p.finish(exitStatusOf(cmd.ProcessState))
}

// finish records the exit, cleans the group and the pid file, and wakes
// waiters.
func (p *Process) finish(st ExitStatus) {
	p.mu.Lock()
	stopping := p.stopping
	pidFile := p.spec.PidFile()
	cg, limit := p.cg, p.spec.Memory
	p.mu.Unlock()
	if !stopping {
		// The leader died on its own: take the rest of its group with it so
		// that nothing keeps holding its ports. (Stop handles the group
		// itself, giving it until the stop deadline.)
		_ = unix.Kill(-p.pgid, unix.SIGKILL)
	}
	if pidFile != "" {
		removePidFileIf(pidFile, p.pid, p.startTicks)
	}
	if cg != nil {
		// An adopted process's signal is unknown: the cgroup's count says.
		st.OOM = (st.Signal == syscall.SIGKILL || !st.Known) && limit > 0 && cg.oomKilled()
		if st.OOM {
			st.MemoryLimit = limit
		}
		cg.remove()
	}
	p.status = st
	close(p.done)
}

// PID is the process id (also its process group id).
func (p *Process) PID() int { return p.pid }

// StartedAt is when the process started.
func (p *Process) StartedAt() time.Time { return p.startedAt }

// Spec is the spec the process runs with (with defaults applied).
func (p *Process) Spec() Spec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec
}

// Adopted reports whether the process came from Adopt.
func (p *Process) Adopted() bool { return p.adopted }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process exits and returns how it ended.
func (p *Process) Wait() ExitStatus {
	<-p.done
	return p.status
}

// Exited returns the exit status and true once the process has exited.
func (p *Process) Exited() (ExitStatus, bool) {
	select {
	case <-p.done:
		return p.status, true
	default:
		return ExitStatus{}, false
	}
}

// RSS is the resident memory of the process (its leader only) in bytes.
func (p *Process) RSS() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", p.pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("read rss of pid %d: short statm %q", p.pid, b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", p.pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// Signal sends sig to the whole process group.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := unix.Kill(-p.pgid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", unix.SignalName(sig), p.pgid, err)
	}
	return nil
}

// Stop stops the process and every process of its group, and returns once
// the leader has exited (the group is SIGKILLed at the latest when the stop
// deadline passes). Graceful (hard false): run the PreStop hook, bounded by
// StopTimeout; send SIGTERM to the group; wait up to StopTimeout; SIGKILL the
// group. Hard: SIGKILL the group now. When ctx ends first, Stop kills the
// group at once. A failing hook is reported in the process's log file and does
// not stop the stop. Stop may be called again (e.g. hard during a graceful
// stop) and on a process that already exited.
func (p *Process) Stop(ctx context.Context, hard bool) error {
	p.mu.Lock()
	p.stopping = true
	spec := p.spec
	p.mu.Unlock()

	if hard {
		_ = p.Signal(unix.SIGKILL)
		return p.waitGroup(ctx, time.Now())
	}
	select {
	case <-p.done:
		return p.waitGroup(ctx, time.Now().Add(spec.StopTimeout))
	default:
	}
	if len(spec.PreStop) > 0 {
		if err := runHook(ctx, spec); err != nil {
			appendLog(spec, fmt.Sprintf("gear: pre-stop hook %q failed: %v", spec.PreStop, err))
		}
	}
	_ = p.Signal(unix.SIGTERM)
	deadline := time.Now().Add(spec.StopTimeout)
	t := time.NewTimer(spec.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.Signal(unix.SIGKILL)
	case <-ctx.Done():
		_ = p.Signal(unix.SIGKILL)
	}
	return p.waitGroup(ctx, deadline)
}

// waitGroup waits for the leader to exit and the rest of the group to leave,
// SIGKILLing the group once deadline has passed or ctx ended.
func (p *Process) waitGroup(ctx context.Context, deadline time.Time) error {
	var killedAt time.Time
	tick := time.NewTicker(groupPoll)
	defer tick.Stop()
	for {
		done := p.done
		select {
		case <-p.done:
			if groupEmpty(p.pgid) {
				return nil
			}
			done = nil
		default:
		}
		if killedAt.IsZero() && (!time.Now().Before(deadline) || ctx.Err() != nil) {
			_ = unix.Kill(-p.pgid, unix.SIGKILL)
			killedAt = time.Now()
		}
		if ctx.Err() != nil && time.Since(killedAt) > time.Second {
			// SIGKILL was sent a while ago; only an unkillable (D state)
			// process can still be there.
			return fmt.Errorf("stop %s (pid %d): %w", p.Spec().ID, p.pid, ctx.Err())
		}
		select {
		case <-tick.C:
		case <-done:
		}
	}
}

// groupEmpty reports whether no live (non-zombie) process is left in
// process group pgid.
func groupEmpty(pgid int) bool {
	if unix.Kill(-pgid, 0) != nil {
		return true // ESRCH
	}
	// Zombies count for kill(2) but are gone for us: they hold no ports or
	// memory, and an adopted process's zombie is its reaper's business.
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.pgid == pgid && st.state != 'Z' {
			return false
		}
	}
	return true
}

func runHook(ctx context.Context, spec Spec) error {
	ctx, cancel := context.WithTimeout(ctx, spec.StopTimeout)
	defer cancel()
	out, err := openLog(spec)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, spec.PreStop[0], spec.PreStop[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: spec.Credential}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (after %s; raise the stop timeout or shorten the hook)", err, spec.StopTimeout)
		}
		return err
	}
	return nil
}

// openLog opens the log file for appending, or /dev/null when the spec
// has no LogDir. An existing log is rotated first when it is already too
// big; a new one (an executor's first start) is created with O_EXCL and
// needs no check: the rotation loop (startRotation) looks at it after
// rotateEvery. A missing LogDir is created.
func openLog(spec Spec) (*os.File, error) {
	path := spec.LogFile()
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("create log dir: %w", err)
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if errors.Is(err, os.ErrExist) {
		if _, err := rotateIfNeeded(path, spec.LogMaxSize, spec.LogMaxFiles); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

func appendLog(spec Spec, line string) {
	if f, err := openLog(spec); err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// startRotation starts the loop that rotates the log while the process runs.
func (p *Process) startRotation() {
	p.mu.Lock()
	spec := p.spec
	if p.rotating || spec.LogFile() == "" || spec.LogMaxSize < 0 {
		p.mu.Unlock()
		return
	}
	p.rotating = true
	p.mu.Unlock()
	go func() {
		t := time.NewTicker(rotateEvery)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				_, _ = rotateIfNeeded(spec.LogFile(), spec.LogMaxSize, spec.LogMaxFiles)
			}
		}
	}()
}

// stat is what this package reads from /proc/PID/stat.
type stat struct {
	state      byte
	pgid       int
	startTicks uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	// comm (field 2) may hold spaces and parentheses: split after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	pgid, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return stat{}, fmt.Errorf("parse /proc/%d/stat: bad number", pid)
	}
	return stat{state: f[0][0], pgid: pgid, startTicks: start}, nil
}

// userHZ is the unit of /proc/PID/stat times; the kernel fixes it at 100
// for user space on every architecture Go supports.
const userHZ = 100

// startTime converts a process start time in clock ticks since boot to wall
// time.
func startTime(ticks uint64) time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			bt, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}
			}
			return time.Unix(bt, 0).Add(time.Duration(ticks) * time.Second / userHZ)
		}
	}
	return time.Time{}
}
