// The daemons the scale benchmark runs: start, stop, their logs and fences,
// and the executors left behind.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func (b *bench) daemon(ctx context.Context, name string, args ...string) (*exec.Cmd, string, error) {
	logPath := filepath.Join(b.work, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(b.gear, args...)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", err
	}
	f.Close()
	b.procs = append(b.procs, cmd)
	return cmd, logPath, nil
}

// stopAll stops the daemons (SIGTERM: a worker stops its executors), then
// kills whatever is left of their process groups.
func (b *bench) stopAll() {
	for _, p := range b.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for _, p := range b.procs {
			_ = p.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		for _, p := range b.procs {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		}
		<-done
	}
	b.sweepExecutors()
}

// fences counts the fences in each worker's log so far.
func (b *bench) fences(workers int) []int {
	n := make([]int, workers)
	for i := range n {
		data, _ := os.ReadFile(filepath.Join(b.work, fmt.Sprintf("worker%d.log", i)))
		n[i] = strings.Count(string(data), fenceLine)
	}
	return n
}

// copyLogs copies the daemons' logs into -logs, if given.
func (b *bench) copyLogs() {
	if keepLogs == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(b.work, "*.log"))
	if err := os.MkdirAll(keepLogs, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "scale bench: -logs:", err)
		return
	}
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err == nil {
			err = os.WriteFile(filepath.Join(keepLogs, filepath.Base(l)), data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale bench: -logs:", err)
		}
	}
}

// sweepExecutors kills the executors left running after the daemons
// stopped (a worker that died leaves its executors, which run in process
// groups of their own): the processes whose working directory is in the
// benchmark's work dir. Thousands of leftover sleeps would starve the
// machine of pids.
func (b *bench) sweepExecutors() {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err == nil && strings.HasPrefix(cwd, b.work+string(filepath.Separator)) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	if n > 0 {
		fmt.Fprintf(os.Stderr, "scale bench: killed %d executors left running after the daemons stopped\n", n)
	}
}
