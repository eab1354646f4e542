package procs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// adoptPoll bounds how long an adopted process's exit can go unnoticed when
// pidfd_open is not available (kernels before 5.3).
const adoptPoll = 100 * time.Millisecond

// writePidFile writes "PID\nSTARTTICKS\n": the pid on the first line, as
// tools expect, and the kernel start time that tells this process apart
// from a later one given the same pid. A new file is created with O_EXCL
// and filled by one write(2): a temp file and a rename would be two more
// directory operations on every executor start. An existing one (a pid
// file left behind) is replaced through a temp file and a rename, so that
// no reader sees the old and the new content mixed. A reader that catches
// a new file before its write (or after a crash between the create and
// the write) finds it empty or without its final newline: readPidFile
// rejects it, and Adopt treats it as stale. A missing PidDir is created.
func writePidFile(path string, pid int, startTicks uint64) error {
	data := strconv.AppendInt(nil, int64(pid), 10)
	data = append(data, '\n')
	data = strconv.AppendUint(data, startTicks, 10)
	data = append(data, '\n')
	err := createPidFile(path, data)
	if errors.Is(err, unix.ENOENT) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("create pid dir: %w", err)
		}
		err = createPidFile(path, data)
	}
	if !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// createPidFile creates path (which must not exist) holding data, written
// by one write(2); a short write removes it again.
func createPidFile(path string, data []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	n, err := unix.Write(fd, data)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil && n != len(data) {
		err = io.ErrShortWrite
	}
	if err != nil {
		os.Remove(path)
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func readPidFile(path string) (pid int, startTicks uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	// Exactly "PID\nSTARTTICKS\n": a file cut short (a crash between its
	// create and its write, see writePidFile) lacks the final newline.
	f := strings.Split(string(b), "\n")
	if len(f) != 3 || f[2] != "" {
		return 0, 0, fmt.Errorf("pid file %s: want pid and start time on two lines, each ending in a newline (%d bytes: torn or not gear's)", path, len(b))
	}
	pid, err1 := strconv.Atoi(f[0])
	startTicks, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("pid file %s: bad number", path)
	}
	return pid, startTicks, nil
}

// removePidFileIf removes path if it still names pid started at startTicks
// (a newer process of the same ID may have rewritten it).
func removePidFileIf(path string, pid int, startTicks uint64) {
	if p, s, err := readPidFile(path); err == nil && p == pid && s == startTicks {
		os.Remove(path)
	}
}

// ListPidFiles returns the pid files (*.pid) in dir, sorted; a missing dir
// has none.
func ListPidFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pid files: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pid") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Adopt re-attaches to a process that an earlier run of the worker started,
// from its pid file (<PidDir>/<ID>.pid). When the pid is alive and its kernel
// start time matches the file, it returns a Process that can be waited,
// signalled and stopped (its exit code is unknown: it is not our child). The
// returned Process's Spec has only ID and PidDir; give the full spec to a
// Supervisor through SupervisorOptions.Adopted so that stops run the hook and
// logs rotate. When the process is gone or the pid was reused, Adopt removes
// the file and returns an error wrapping ErrStalePidFile.
func Adopt(pidFile string) (*Process, error) {
	pid, ticks, err := readPidFile(pidFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("adopt: %w: %v", ErrStalePidFile, err)
		}
		os.Remove(pidFile)
		return nil, fmt.Errorf("adopt: %w: %v (removed)", ErrStalePidFile, err)
	}
	// Open the pidfd first, then check identity: if the identity matches
	// after the open, the descriptor is known to refer to the right process.
	pidfd, fdErr := unix.PidfdOpen(pid, 0)
	if fdErr != nil && !errors.Is(fdErr, unix.ENOSYS) {
		pidfd = -1
		if errors.Is(fdErr, unix.ESRCH) {
			os.Remove(pidFile)
			return nil, fmt.Errorf("adopt %s: %w: pid %d is gone (removed)", pidFile, ErrStalePidFile, pid)
		}
	}
	st, err := readStat(pid)
	if err != nil || st.startTicks != ticks || st.state == 'Z' || st.state == 'X' {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		os.Remove(pidFile)
		return nil, fmt.Errorf("adopt %s: %w: pid %d is gone or is another process now (removed)", pidFile, ErrStalePidFile, pid)
	}
	id := strings.TrimSuffix(filepath.Base(pidFile), ".pid")
	p := &Process{
		pid:        pid,
		pgid:       st.pgid,
		startTicks: ticks,
		startedAt:  startTime(ticks),
		adopted:    true,
		done:       make(chan struct{}),
		spec:       Spec{ID: id, PidDir: filepath.Dir(pidFile)}.withDefaults(),
	}
	go p.watch(pidfd)
	return p, nil
}

// watch waits for an adopted process to exit: on its pidfd when there is
// one, else by probing it every adoptPoll.
func (p *Process) watch(pidfd int) {
	if pidfd < 0 || awaitExit(pidfd) != nil {
		p.pollAlive()
	}
	p.finish(ExitStatus{})
}

func (p *Process) pollAlive() {
	t := time.NewTicker(adoptPoll)
	defer t.Stop()
	for range t.C {
		st, err := readStat(p.pid)
		if err != nil || st.startTicks != p.startTicks || st.state == 'Z' || st.state == 'X' {
			return
		}
	}
}

// attach gives an adopted process the spec it was started with.
func (p *Process) attach(spec Spec) {
	spec = spec.withDefaults()
	cg := openCgroup(spec) // limits: the cgroup the earlier run made
	p.mu.Lock()
	p.spec = spec
	p.cg = cg
	p.mu.Unlock()
	p.startRotation()
}
