// What the scale benchmark measures besides the wall time: the leader's
// metrics and profile, the workers' CPU, the file system's create cost,
// and the bare fork/exec loop it compares with.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gear-run/gear/scripts/bench/internal/procstat"
)

func bytesPerS(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// executorGauges reads the leader's gear_executors{state} gauges.
func (b *bench) executorGauges(ctx context.Context) (map[string]int, error) {
	body, err := b.metrics(ctx)
	if err != nil {
		return nil, err
	}
	g := map[string]int{}
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, `gear_executors{state="`)
		if !ok {
			continue
		}
		state, val, ok := strings.Cut(rest, `"} `)
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); ok && err == nil {
			g[state] = int(v)
		}
	}
	if len(g) == 0 {
		return nil, errors.New("leader /metrics lacks gear_executors")
	}
	return g, nil
}

func (b *bench) metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+b.master+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("leader /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("leader /metrics: %s %v", resp.Status, err)
	}
	return string(body), nil
}

// beatMetrics reads the leader's heartbeat counters from its /metrics.
func (b *bench) beatMetrics(ctx context.Context) (beatCounters, error) {
	body, err := b.metrics(ctx)
	if err != nil {
		return beatCounters{}, err
	}
	var c beatCounters
	found := 0
	for _, line := range strings.Split(body, "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case `gear_heartbeats_total{result="ok"}`:
			c.beats, found = v, found+1
		case `gear_heartbeat_bytes_total{direction="received"}`:
			c.in, found = v, found+1
		case `gear_heartbeat_bytes_total{direction="sent"}`:
			c.out, found = v, found+1
		}
	}
	if found != 3 {
		return c, fmt.Errorf("leader /metrics lacks gear_heartbeats_total{result=\"ok\"} or gear_heartbeat_bytes_total (a gear older than this benchmark?)")
	}
	return c, nil
}

// profile waits for the pprof addresses of the master and the first
// worker, then takes a CPU profile of both over window and a goroutine
// dump of each at its end.
func (b *bench) profile(ctx context.Context, dir string, window time.Duration) error {
	names := []string{"master-127.0.0.1", "worker-127.0.0.1"}
	errs := make(chan error, len(names))
	for _, name := range names {
		go func() {
			addr, err := os.ReadFile(filepath.Join(dir, name+".addr"))
			if err != nil {
				errs <- fmt.Errorf("%s: no pprof address (%w): is pprof_debug.go built in?", name, err)
				return
			}
			get := func(path, out string) error {
				req, err := http.NewRequestWithContext(ctx, "GET", "http://"+string(addr)+path, nil)
				if err != nil {
					return err
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				data, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dir, out), data, 0o644)
			}
			err = get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(window.Seconds())), name+".cpu.pprof")
			if err == nil {
				err = get("/debug/pprof/goroutine?debug=1", name+".goroutines.txt")
			}
			errs <- err
		}()
	}
	return errors.Join(<-errs, <-errs)
}

// createProbe creates n empty files in a new directory dir (on the file
// system of the daemons' data dirs) and returns the mean time per file.
// They stay until the work dir is removed: deleting them now would make
// the creations that follow slower on ext4 without a journal.
func createProbe(dir string, n int) (time.Duration, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return 0, err
		}
		f.Close()
	}
	return time.Since(start) / time.Duration(n), nil
}

// workersCPU is the user+system CPU of every worker daemon so far.
func (b *bench) workersCPU() time.Duration {
	var sum time.Duration
	for _, pid := range b.workers {
		sum += procstat.CPU(pid)
	}
	return sum
}

// selfCPU is this process's user+system CPU so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareStart fork/execs n `sleep 1000` and returns how long starting them
// all took; it then kills and reaps them.
func bareStart(ctx context.Context, n int) (time.Duration, error) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return 0, err
	}
	cmds := make([]*exec.Cmd, 0, n)
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	}()
	start := time.Now()
	for range n {
		c := exec.CommandContext(ctx, sleep, "1000")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return 0, err
		}
		cmds = append(cmds, c)
	}
	return time.Since(start), nil
}
