package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
)

// executor is one assigned executor on this worker: it fetches the bundle,
// then hands the process to a procs.Supervisor.
type executor struct {
	w  *Worker
	id string

	mu       sync.Mutex
	a        cluster.Assignment
	sup      *procs.Supervisor
	gen      int // generation the running process was started with
	state    cluster.ExecutorState
	lastErr  string
	adopted  *procs.Process
	stopping bool
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	restart  chan struct{} // a newer generation was assigned

	health    cluster.HealthStatus // health.go; "" until a check runs
	healthErr string               // the last failure that made it failing

	holdsSlot atomic.Bool // holds one of the worker's startSlots
}

// startConcurrency is how many executors a worker prepares and starts at
// once. Forks are serialized by the Go runtime anyway; preparing more at
// once only adds threads: a worker given 1000 executors at once started
// them all concurrently, each goroutine blocked in a file or fork system
// call held an OS thread, and ten such workers ran the machine out of
// processes (pid_max) until the Go runtime aborted on pthread_create.
const startConcurrency = 8

// acquireStart waits for a start slot; false when ctx ends first.
func (e *executor) acquireStart(ctx context.Context) bool {
	if e.w.startSlots == nil {
		return true
	}
	select {
	case e.w.startSlots <- struct{}{}:
		e.holdsSlot.Store(true)
		return true
	case <-ctx.Done():
		return false
	}
}

// releaseStart gives the start slot back, once: when the first start
// attempt has its outcome (the process runs, or it failed), or when run
// ends.
func (e *executor) releaseStart() {
	if e.holdsSlot.CompareAndSwap(true, false) {
		<-e.w.startSlots
	}
}

func newExecutor(w *Worker, a cluster.Assignment, adopted *procs.Process) *executor {
	return &executor{w: w, id: a.Executor.ID, a: a, adopted: adopted, gen: a.Generation,
		state: cluster.Starting, done: make(chan struct{}), restart: make(chan struct{}, 1)}
}

func (e *executor) cpus() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.a.Executor.CPUs
}

func (e *executor) shared() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.a.Process.Shared
}

// update takes the leader's latest assignment; a higher generation asks
// for a graceful restart with the new environment.
func (e *executor) update(a cluster.Assignment) {
	e.mu.Lock()
	newer := a.Generation > e.a.Generation
	e.a = a
	e.mu.Unlock()
	if newer {
		select {
		case e.restart <- struct{}{}:
		default:
		}
	}
}

// otherBundle reports whether assignment a runs another bundle or command
// than the one this executor was started with (an app update or
// rollback): the process must be replaced, not restarted.
func (e *executor) otherBundle(a cluster.Assignment) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return a.Bundle.Digest != e.a.Bundle.Digest || !slices.Equal(a.Process.Command, e.a.Process.Command)
}

func (e *executor) report() cluster.ExecutorReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := cluster.ExecutorReport{ID: e.id, State: e.state, CPUs: e.a.Executor.CPUs, Generation: e.gen, LastError: e.lastErr,
		Restarts: e.a.Executor.Restarts, Crashes: e.a.Executor.Crashes}
	if e.sup != nil {
		st := e.sup.Status()
		r.State, r.PID, r.Restarts, r.Crashes = cluster.ExecutorState(st.State), st.PID, st.Restarts, st.Crashes
		r.LastExit, r.StartedAt, r.LogTail = st.LastExit, st.StartedAt, st.LogTail
		if st.LastError != "" {
			r.LastError = st.LastError
		}
		if len(st.CPUs) > 0 {
			r.CPUs = st.CPUs
		}
	}
	if r.CPUs == nil {
		r.CPUs = []int{}
	}
	r.Health = e.health
	if r.Health == "" || r.State != cluster.Running && r.Health != cluster.HealthFailing {
		r.Health = cluster.HealthUnknown
	}
	if e.stopping && r.State != cluster.Stopped && r.State != cluster.Failed {
		r.State = cluster.Stopping
	}
	return r
}

func (e *executor) fail(err error) {
	e.mu.Lock()
	e.state, e.lastErr = cluster.Failed, err.Error()
	e.mu.Unlock()
	e.w.log.Error("executor failed", "executor", e.id, "err", err)
	e.w.kickHeartbeat()
}

// run prepares and supervises the executor until it is stopped.
func (e *executor) run() {
	defer close(e.done)
	ctx, cancel := context.WithCancel(context.Background()) // stopped through stop(), not by the worker's exit
	e.mu.Lock()
	e.ctx, e.cancel = ctx, cancel
	stopping := e.stopping
	a := e.a
	adopted := e.adopted
	e.mu.Unlock()
	defer cancel()
	if stopping || !e.acquireStart(ctx) {
		return
	}
	defer e.releaseStart()
	spec, err := e.prepare(ctx, a)
	if err != nil {
		e.releaseStart()
		if adopted != nil {
			stopWithin(ctx, adopted)
		}
		e.fail(err)
		<-ctx.Done()
		return
	}
	pol := policyFor(e.w.opts.Policy, a.Process)
	sup := procs.NewSupervisor(spec, pol, e.supervisorOptions(a, adopted))
	e.mu.Lock()
	if e.stopping || ctx.Err() != nil {
		// Stopped (or detached) while preparing: stopCtx found no
		// supervisor to stop and only cancelled ctx, and a supervisor
		// started now would leave its process running when it sees ctx
		// done, with nobody tracking it (an orphan the fault suite saw
		// outlive its worker). Start nothing.
		stopping := e.stopping
		e.mu.Unlock()
		if adopted != nil && stopping {
			sctx, scancel := context.WithTimeout(context.Background(), e.w.stopTimeout()+time.Second)
			stopWithin(sctx, adopted)
			scancel()
		}
		return
	}
	e.sup = sup
	e.mu.Unlock()
	if adopted != nil {
		e.w.log.Info("adopted running executor", "executor", e.id, "pid", adopted.PID())
	}
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(ctx) }()
	if h := a.Process.Health; h != nil {
		healthDone := make(chan struct{})
		go func() { defer close(healthDone); e.checkHealth(ctx, sup, *h, spec) }()
		defer func() { <-healthDone }() // ctx is cancelled first (deferred earlier)
	}
	for {
		select {
		case err := <-supDone:
			if err != nil && ctx.Err() == nil {
				e.w.log.Warn("executor supervision ended", "executor", e.id, "err", err)
			}
			<-ctx.Done()
			return
		case <-ctx.Done():
			<-supDone
			return
		case <-e.restart:
			e.mu.Lock()
			a = e.a
			e.mu.Unlock()
			spec, err := e.w.spec(ctx, a)
			if err != nil {
				e.fail(err)
				continue
			}
			e.w.log.Info("rolling restart", "executor", e.id, "generation", a.Generation)
			if err := sup.Restart(ctx, spec.Env); err != nil {
				e.w.log.Warn("restart failed", "executor", e.id, "err", err)
				continue
			}
			e.mu.Lock()
			e.gen = a.Generation
			e.mu.Unlock()
			e.w.kickHeartbeat()
		}
	}
}

// supervisorOptions are the supervisor's collaborators. Each supervisor
// gets its own jitter source seeded from crypto/rand, so that executors
// that crash together do not restart in lockstep.
func (e *executor) supervisorOptions(a cluster.Assignment, adopted *procs.Process) procs.SupervisorOptions {
	return procs.SupervisorOptions{
		Rand:   procs.NewRand(),
		Logger: e.w.log, InitialRestarts: a.Executor.Restarts, InitialCrashes: a.Executor.Crashes, Adopted: adopted,
		OnChange: func(st procs.Status) {
			if st.State != procs.StateStarting || st.LastError != "" {
				e.releaseStart() // the first start has its outcome
			}
			e.w.kickHeartbeat()
		},
		OnStart:   func(int) { e.w.metrics.starts.Inc() },
		OnRestart: func() { e.w.metrics.restarts.Inc() },
		OnExit:    func(reason string) { e.w.metrics.exits.WithLabelValues(reason).Inc() },
	}
}

func (e *executor) isStopping() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopping
}

// markStopping makes the executor report STOPPING until its process is
// gone, even before its supervisor hears of the stop.
func (e *executor) markStopping() {
	e.mu.Lock()
	e.stopping = true
	e.mu.Unlock()
}

// prepare builds the spec, retrying what a failover or a busy master can
// cause (a fetch cut short, no master answering) with backoff. A corrupt
// bundle or a bad bundle is final.
func (e *executor) prepare(ctx context.Context, a cluster.Assignment) (procs.Spec, error) {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		spec, err := e.w.spec(ctx, a)
		if err == nil {
			e.mu.Lock()
			e.lastErr = ""
			e.mu.Unlock()
			return spec, nil
		}
		if !retryable(err) || attempt >= 6 || ctx.Err() != nil {
			return procs.Spec{}, err
		}
		e.w.log.Warn("preparing executor failed; retrying", "executor", e.id, "attempt", attempt, "retry_in", delay, "err", err)
		e.mu.Lock()
		e.lastErr = fmt.Sprintf("attempt %d: %v (retrying)", attempt, err)
		e.mu.Unlock()
		e.w.kickHeartbeat()
		e.releaseStart() // others start while this one waits to retry
		select {
		case <-ctx.Done():
			return procs.Spec{}, ctx.Err()
		case <-time.After(delay):
		}
		if !e.acquireStart(ctx) {
			return procs.Spec{}, ctx.Err()
		}
		delay = min(delay*2, 4*time.Second)
	}
}

// retryable tells transient fetch failures from final ones.
func retryable(err error) bool {
	var apiErr *cluster.APIError
	switch {
	case errors.Is(err, cluster.ErrNoMaster), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errListenBusy):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Status >= 500
	}
	return false
}

// stop stops the executor (graceful unless hard) and waits for it.
func (e *executor) stop(hard bool) {
	ctx, cancel := context.WithTimeout(context.Background(), e.w.stopTimeout()*2+5*time.Second)
	defer cancel()
	e.stopCtx(ctx, hard)
}

// stopWithin stops gracefully but kills whatever is left when ctx ends.
func (e *executor) stopWithin(ctx context.Context) {
	e.stopCtx(ctx, false)
}

func (e *executor) stopCtx(ctx context.Context, hard bool) {
	e.mu.Lock()
	e.stopping = true
	sup := e.sup
	cancel := e.cancel
	e.mu.Unlock()
	if sup != nil {
		if err := sup.Stop(ctx, hard); err != nil {
			e.w.log.Warn("graceful stop did not finish in time; killing", "executor", e.id, "err", err)
			kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = sup.Stop(kctx, true)
			kcancel()
		}
	}
	if cancel != nil {
		cancel()
	}
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
	}
}

// detach leaves the process running (worker exit with on-exit = leave):
// its pid file stays for the next worker start to adopt it.
func (e *executor) detach() {
	e.mu.Lock()
	cancel := e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel() // Run returns without stopping the process
	}
}

func stopWithin(ctx context.Context, p *procs.Process) {
	if err := p.Stop(ctx, false); err != nil {
		kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.Stop(kctx, true)
		cancel()
	}
}

// policyFor merges a process group's settings over the worker defaults: the
// one conversion from the process definition (cluster.Process) to what
// procs runs it with, beside spec for the procs.Spec. The health check
// (p.Health) is run beside the supervisor (health.go).
func policyFor(def procs.Policy, p cluster.Process) procs.Policy {
	pol := def
	if p.Restart != "" {
		pol.Restart = p.Restart
	}
	if p.MinUptime > 0 {
		pol.MinUptime = p.MinUptime
	}
	if p.MaxRestarts != 0 {
		pol.MaxRestarts = p.MaxRestarts
	}
	if p.RestartWindow > 0 {
		pol.Window = p.RestartWindow
	}
	if p.MaxAge > 0 {
		pol.MaxAge = p.MaxAge
	}
	if p.MaxRSS > 0 {
		pol.MaxRSS = p.MaxRSS
	}
	return pol
}

// spec builds the process spec: bundle on disk, environment, command with
// ${VAR}s expanded.
func (w *Worker) spec(ctx context.Context, a cluster.Assignment) (procs.Spec, error) {
	file, err := w.cache.file(ctx, a.Bundle)
	if err != nil {
		return procs.Spec{}, err
	}
	owner, err := w.executorUser(a.Process)
	if err != nil {
		return procs.Spec{}, err
	}
	bundleDir := "" // the shared, read-only unpacked bundle (sandbox.go)
	if a.Bundle.Kind != cluster.KindJar {
		if bundleDir, err = w.cache.unpacked(ctx, a.Bundle, file); err != nil {
			return procs.Spec{}, err
		}
	}
	dir, err := w.workDir(a.Executor.ID, bundleDir, owner) // the executor's own copy
	if err != nil {
		return procs.Spec{}, err
	}
	if bundleDir == "" {
		bundleDir = dir
	}
	ports := a.Process.Ports
	if len(ports) == 0 {
		p, err := freePort(w.opts.IP)
		if err != nil {
			return procs.Spec{}, err
		}
		ports = []int{p}
	}
	vars := map[string]string{
		"GEAR_APP_ID":         a.Executor.App,
		"GEAR_EXECUTOR_ID":    a.Executor.ID,
		"GEAR_EXECUTOR_INDEX": strconv.Itoa(a.Executor.Index),
		"GEAR_PROCESS":        a.Executor.Process,
		"GEAR_CPUS":           cluster.FormatInts(a.Executor.CPUs),
		"GEAR_PORTS":          cluster.FormatInts(ports),
		"PORT":                strconv.Itoa(ports[0]),
		"GEAR_WORKER_ID":      w.id,
		"GEAR_WORKER_ADDR":    w.addr,
		"GEAR_MASTERS":        strings.Join(w.client.Masters(), ","),
		"GEAR_BUNDLE":         file,
		"GEAR_BUNDLE_DIR":     bundleDir,
		"BUNDLE":              file,
		"GEAR_GENERATION":     strconv.Itoa(a.Generation),
	}
	if len(a.Process.Listen) > 0 {
		vars["GEAR_LISTEN"] = cluster.FormatInts(a.Process.Listen)
	}
	env := allowedEnv(os.Environ()) // never the worker's secrets (sandbox.go)
	for _, kv := range w.opts.ExtraEnv {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	maps.Copy(env, vars)
	for k, v := range a.Process.Env {
		env[k] = os.Expand(v, func(n string) string { return env[n] })
	}
	maps.Copy(env, a.Env) // `gear app restart -env` wins
	if owner != nil {
		env["HOME"], env["USER"], env["LOGNAME"] = owner.home, owner.user, owner.user
	}
	cmd := make([]string, 0, len(a.Process.Command)+len(a.Args))
	for _, c := range a.Process.Command {
		cmd = append(cmd, os.Expand(c, func(n string) string { return env[n] }))
	}
	keys := slices.Collect(maps.Keys(env))
	sort.Strings(keys)
	envList := make([]string, 0, len(keys))
	for _, k := range keys {
		envList = append(envList, k+"="+env[k])
	}
	stopTimeout := w.opts.StopTimeout
	if a.Process.StopTimeout > 0 {
		stopTimeout = a.Process.StopTimeout
	}
	var lns []*os.File
	var lnNames []string
	if len(a.Process.Listen) > 0 {
		owner := a.Executor.App + "." + a.Executor.Process
		pids := w.executorPIDs()
		for _, port := range a.Process.Listen {
			f, err := w.listeners.acquire(w.opts.IP, port, owner, a.Executor.ID, pids)
			if err != nil {
				w.listeners.release(a.Executor.ID)
				return procs.Spec{}, err
			}
			lns = append(lns, f)
			lnNames = append(lnNames, "port"+strconv.Itoa(port))
		}
	}
	return procs.Spec{
		Listeners: lns, ListenerNames: lnNames,
		ID: a.Executor.ID, Command: cmd, Dir: dir, Env: envList, CPUs: a.Executor.CPUs,
		StopTimeout: stopTimeout, PreStop: a.Process.PreStop,
		LogDir: filepath.Join(w.opts.DataDir, "logs"), LogMaxSize: w.opts.LogMaxSize, LogMaxFiles: w.opts.LogMaxFiles,
		Ports: a.Process.Ports, PidDir: filepath.Join(w.opts.DataDir, "pids"),
		Credential: owner.credential(),
		// One cgroup parent per worker, so that workers sharing a
		// machine (and a cgroup) never collide.
		Memory: a.Process.Memory, MaxPids: a.Process.MaxPids, CgroupParent: "gear-" + w.id,
	}, nil
}

// executorPIDs are the pids of this worker's executors (running or
// adopted): the only processes a listening socket is taken back from.
func (w *Worker) executorPIDs() []int {
	w.mu.Lock()
	execs := make([]*executor, 0, len(w.execs))
	for _, e := range w.execs {
		execs = append(execs, e)
	}
	var pids []int
	for _, p := range w.adopted {
		pids = append(pids, p.PID())
	}
	w.mu.Unlock()
	for _, e := range execs {
		e.mu.Lock()
		if e.adopted != nil {
			pids = append(pids, e.adopted.PID())
		}
		sup := e.sup
		e.mu.Unlock()
		if sup != nil {
			if pid := sup.Status().PID; pid > 0 {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("pick a port for the executor: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
