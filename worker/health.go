// Health checks of executors (gear-app.conf's health {} block) and the
// worker's cluster2-style ECV pages.
//
// Each executor with a check has one checker goroutine, owned by its run
// loop. It checks every interval while the process is RUNNING; failures
// during the start grace do not count. After `failures` failures in a row
// the executor is failing and the supervisor stops it as unhealthy, so its
// restart policy (with backoff and the crash-loop limit) decides what
// follows. The verdict (passing, failing, unknown) travels to the leader
// in every heartbeat.
//
// ECV: GET /ecv says AVAILABLE (200) only while the worker is connected to
// the leader and not draining, UNAVAILABLE (503) otherwise. GET
// /ecv/{executor} is one executor's page: AVAILABLE only while the worker
// is, the executor is RUNNING, its check is not failing and its app is not
// disabled (`gear app disable ID`, a replicated flag that reaches the
// worker in the assignments). A load balancer that polls an instance's
// page takes it out of rotation without stopping it.

package worker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
)

// healthState holds what the worker's /ecv reports.
type healthState struct {
	connected atomic.Bool // the last heartbeat reached a leader
	draining  atomic.Bool // set by SetDraining
}

// SetDraining marks the worker as draining (or not): its /ecv then says
// UNAVAILABLE with reason draining, so load balancers stop sending traffic.
// The drain work (moving executors away) is the caller's.
func (w *Worker) SetDraining(on bool) { w.health.draining.Store(on) }

// available says whether the worker serves traffic, and if not, why.
func (w *Worker) available() (bool, string) {
	switch {
	case w.health.draining.Load():
		return false, "draining"
	case !w.health.connected.Load():
		return false, "no_leader"
	}
	return true, ""
}

func writeECV(rw http.ResponseWriter, ok bool, reason, extra string) {
	rw.Header().Set("Content-Type", "text/plain")
	rw.Header().Set("Cache-Control", "no-cache")
	status := "AVAILABLE"
	if !ok {
		status = "UNAVAILABLE"
		rw.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintf(rw, "status=%s&ServeTraffic=%t", status, ok)
	if reason != "" {
		fmt.Fprintf(rw, "&reason=%s", reason)
	}
	fmt.Fprintf(rw, "%s&time=%s\n", extra, time.Now().UTC().Format(time.RFC3339))
}

func (w *Worker) handleECV(rw http.ResponseWriter, r *http.Request) {
	ok, reason := w.available()
	writeECV(rw, ok, reason, fmt.Sprintf("&worker=%s&ip=%s&port=%d", w.id, w.opts.IP, w.opts.Port))
}

func (w *Worker) handleExecutorECV(rw http.ResponseWriter, r *http.Request) {
	id := r.PathValue("executor")
	w.mu.Lock()
	e := w.execs[id]
	w.mu.Unlock()
	if e == nil {
		writeECV(rw, false, "unknown_executor", "&executor="+id+"&worker="+w.id)
		return
	}
	ok, reason := w.available()
	rep := e.report()
	e.mu.Lock()
	disabled := e.a.Disabled
	e.mu.Unlock()
	switch {
	case !ok:
	case disabled:
		ok, reason = false, "disabled"
	case rep.State != cluster.Running:
		ok, reason = false, strings.ToLower(string(rep.State))
	case rep.Health == cluster.HealthFailing:
		ok, reason = false, "unhealthy"
	}
	writeECV(rw, ok, reason, fmt.Sprintf("&executor=%s&worker=%s&pid=%d&health=%s", id, w.id, rep.PID, rep.Health))
}

// checkHealth runs the executor's health check until ctx ends.
func (e *executor) checkHealth(ctx context.Context, sup *procs.Supervisor, h cluster.Health, spec procs.Spec) {
	h = h.WithDefaults()
	port := h.Port
	host := e.w.opts.IP
	tick := time.NewTicker(h.Interval)
	defer tick.Stop()
	pid, fails := 0, 0
	var started time.Time
	for {
		st := sup.Status()
		switch {
		case st.State != procs.StateRunning || st.PID == 0:
			pid, fails = 0, 0
			e.setHealth(cluster.HealthUnknown, "")
		default:
			if st.PID != pid {
				pid, fails, started = st.PID, 0, time.Now()
				e.setHealth(cluster.HealthUnknown, "")
				if h.Port == 0 {
					// The instance's own $PORT: each start (and an adopted
					// process) may have another, so ask the process.
					port = instancePort(pid, spec.Env)
				}
			}
			err := runCheck(ctx, h, host, port, spec)
			inGrace := time.Since(started) < h.Grace
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				fails = 0
				e.setHealth(cluster.HealthPassing, "")
			case inGrace:
				// failures in the start grace do not count
			default:
				fails++
				e.w.log.Info("health check failed", "executor", e.id, "pid", pid, "failures", fails, "of", h.Failures, "err", err)
				if fails >= h.Failures {
					e.setHealth(cluster.HealthFailing, err.Error())
					e.w.log.Warn("executor unhealthy; stopping it for its restart policy", "executor", e.id, "pid", pid, "err", err)
					if uerr := sup.Unhealthy(ctx, err.Error()); uerr != nil {
						e.w.log.Warn("stopping unhealthy executor", "executor", e.id, "err", uerr)
					}
					fails = 0
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// setHealth records the verdict and reports a change at once.
func (e *executor) setHealth(h cluster.HealthStatus, why string) {
	e.mu.Lock()
	changed := e.health != h
	e.health = h
	if why != "" {
		e.healthErr = why
	}
	e.mu.Unlock()
	if changed {
		e.w.log.Info("health", "executor", e.id, "health", h)
		e.w.kickHeartbeat()
	}
}

// runCheck runs one check; nil means it passed.
func runCheck(ctx context.Context, h cluster.Health, host string, port int, spec procs.Spec) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	switch {
	case h.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+h.HTTP, nil)
		if err != nil {
			return err
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", h.HTTP, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("GET %s: status %d (want 2xx or 3xx)", h.HTTP, resp.StatusCode)
		}
		if h.Body != "" && !strings.Contains(string(body), h.Body) {
			return fmt.Errorf("GET %s: the body does not contain %q", h.HTTP, h.Body)
		}
		return nil
	case h.TCP:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp connect %s: %w", addr, err)
		}
		return c.Close()
	default:
		cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
		cmd.Dir, cmd.Env = spec.Dir, spec.Env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: spec.Credential}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("command %s: %w: %s", h.Command[0], err, strings.TrimSpace(lastLine(string(out))))
		}
		return nil
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// instancePort is the $PORT process pid was started with (read from
// /proc/PID/environ), or the one in env when that cannot be read.
func instancePort(pid int, env []string) int {
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ"); err == nil {
		if p, err := strconv.Atoi(envValue(strings.Split(string(b), "\x00"), "PORT")); err == nil {
			return p
		}
	}
	p, _ := strconv.Atoi(envValue(env, "PORT"))
	return p
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
