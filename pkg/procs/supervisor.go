package procs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// State is an executor's supervision state, as shown in the JSON API.
type State string

// The states. These exact strings are part of gear's JSON API.
const (
	StateStarting State = "STARTING" // being launched
	StateRunning  State = "RUNNING"  // started and alive
	StateBackoff  State = "BACKOFF"  // exited, waiting to restart
	StateStopping State = "STOPPING" // being stopped on request
	StateStopped  State = "STOPPED"  // stopped on request, or ended as its policy allows
	StateFailed   State = "FAILED"   // gave up: no more restarts
)

// Status is a snapshot of a Supervisor.
type Status struct {
	State          State     `json:"state"`
	PID            int       `json:"pid,omitempty"`
	Restarts       int       `json:"restarts"`        // restarts after the process ended on its own (not Restart or recycling), including SupervisorOptions.InitialRestarts
	RecentRestarts int       `json:"recent_restarts"` // within Policy.Window
	Crashes        int       `json:"crashes"`         // crash-loop count: runs in a row shorter than Policy.MinUptime, including SupervisorOptions.InitialCrashes
	LastExit       string    `json:"last_exit,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	CPUs           []int     `json:"cpus,omitempty"`
	LogTail        []string  `json:"log_tail,omitempty"` // set when the process exits
}

// Clock is the time source of a Supervisor.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SupervisorOptions are a Supervisor's collaborators; all are optional.
type SupervisorOptions struct {
	Clock  Clock        // default: the real clock
	Rand   Rand         // backoff jitter; default: none (the worker passes NewRand())
	Logger *slog.Logger // default: discard
	// OnChange is called, from the supervising goroutine, after each state
	// change. It must not block; it may call Status.
	OnChange func(Status)
	// InitialRestarts is the restart count so far (from replicated state).
	InitialRestarts int
	// InitialCrashes is the consecutive crash count so far (from
	// replicated state), so that a crash loop under way when the worker
	// restarted still gives up after Policy.MaxRestarts in a row.
	InitialCrashes int
	// Adopted is a process found by Adopt: Run watches it instead of
	// starting a new one first.
	Adopted *Process
	// OnStart, OnExit and OnRestart, if set, are called from the
	// supervising goroutine (they must not block): after each process
	// start, after each end of a process with why it ended (one of the
	// Exit* reasons), and when a process that ended on its own is started
	// again under the Policy. Metrics count them.
	OnStart   func(pid int)
	OnExit    func(reason string)
	OnRestart func()
	// CheckInterval is how often MaxAge and MaxRSS are checked (default 5s).
	CheckInterval time.Duration
	// TailLines is how many log lines Status.LogTail holds (default 20).
	TailLines int
}

// Why a process ended, as SupervisorOptions.OnExit reports it.
const (
	ExitSuccess     = "success"      // exit status 0
	ExitFailure     = "failure"      // a non-zero exit status
	ExitSignal      = "signal"       // killed by a signal it was not sent by a stop
	ExitUnknown     = "unknown"      // an adopted process: its status cannot be collected
	ExitStopped     = "stopped"      // stopped on request
	ExitReplaced    = "replaced"     // stopped for a rolling restart or recycling
	ExitStartFailed = "start_failed" // it could not be started at all
	ExitUnhealthy   = "unhealthy"    // stopped because its health check failed
)

// exitReason classifies an exit that no request caused.
func exitReason(es ExitStatus) string {
	switch {
	case !es.Known:
		return ExitUnknown
	case es.Signal != 0:
		return ExitSignal
	case es.Code != 0:
		return ExitFailure
	}
	return ExitSuccess
}

func (s *Supervisor) exited(reason string) {
	if s.opts.OnExit != nil {
		s.opts.OnExit(reason)
	}
}

// Supervisor runs one executor: it starts its process, waits for it and
// restarts it according to its Policy. Create it with NewSupervisor, run Run
// in a goroutine, and use Stop, Restart and Status from anywhere.
type Supervisor struct {
	spec Spec
	pol  Policy
	opts SupervisorOptions
	log  *slog.Logger

	reqs    chan request
	runDone chan struct{}

	mu      sync.Mutex
	core    *Backoff // guarded by mu: Status reads it
	st      Status
	proc    *Process // the current process, nil when none
	started bool     // Run was called
	ended   bool     // Run returned
}

type requestKind int

const (
	reqStop requestKind = iota
	reqRestart
	reqUnhealthy
)

type request struct {
	kind   requestKind
	reason string // reqUnhealthy
	hard   bool
	env    []string
	ctx    context.Context
	reply  chan error // buffered
}

// NewSupervisor returns a Supervisor for spec under pol. Nothing runs until
// Run is called.
func NewSupervisor(spec Spec, pol Policy, opts SupervisorOptions) *Supervisor {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 5 * time.Second
	}
	if opts.TailLines <= 0 {
		opts.TailLines = 20
	}
	spec = spec.withDefaults()
	s := &Supervisor{
		spec:    spec,
		pol:     pol.withDefaults(),
		opts:    opts,
		log:     opts.Logger.With("executor", spec.ID),
		reqs:    make(chan request),
		runDone: make(chan struct{}),
		core:    NewBackoff(pol, opts.Rand, opts.InitialRestarts, opts.InitialCrashes),
	}
	s.st = Status{State: StateStarting, Restarts: opts.InitialRestarts, CPUs: slices.Clone(spec.CPUs)}
	if p := opts.Adopted; p != nil {
		p.attach(spec)
		s.proc = p
		s.st.State = StateRunning
		s.st.PID = p.PID()
		s.st.StartedAt = p.StartedAt()
	}
	return s
}

// Status returns a snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Supervisor) statusLocked() Status {
	st := s.st
	st.CPUs = slices.Clone(st.CPUs)
	st.LogTail = slices.Clone(st.LogTail)
	st.Restarts = s.core.Restarts()
	st.RecentRestarts = s.core.RecentRestarts(s.opts.Clock.Now())
	st.Crashes = s.core.Crashes()
	return st
}

// update changes the status under the lock and reports it to OnChange.
func (s *Supervisor) update(f func(st *Status)) {
	s.mu.Lock()
	f(&s.st)
	st := s.statusLocked()
	s.mu.Unlock()
	if s.opts.OnChange != nil {
		s.opts.OnChange(st)
	}
}

func (s *Supervisor) setState(state State) {
	s.update(func(st *Status) { st.State = state })
}

// Run supervises until the executor is stopped (returns nil), gives up
// (returns an error wrapping ErrFailed), or ctx ends. When ctx ends Run
// detaches: it returns ctx.Err() and leaves the process running with its pid
// file in place, for a restarted worker to Adopt; call Stop to stop it
// instead. Run may be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("procs: Supervisor.Run called twice")
	}
	s.started = true
	p := s.proc
	s.mu.Unlock()
	if err := errors.Join(s.spec.Validate(), s.pol.Validate()); err != nil && p == nil {
		// Retrying cannot fix a bad spec or policy: fail at once.
		s.update(func(st *Status) { st.State = StateFailed; st.LastError = err.Error() })
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		close(s.runDone)
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}

	var helpers sync.WaitGroup // graceful stops in flight
	var pending []request      // restart requests waiting for RUNNING
	defer func() {
		helpers.Wait()
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		close(s.runDone)
		for _, r := range pending {
			r.reply <- fmt.Errorf("restart %s: supervisor ended", s.spec.ID)
		}
	}()
	stopWith := func(r request) {
		proc := p // the loop sets p to nil once the process exits
		helpers.Add(1)
		go func() {
			defer helpers.Done()
			if err := proc.Stop(r.ctx, r.hard); err != nil {
				s.log.Warn("stop failed", "pid", proc.PID(), "err", err)
			}
		}()
	}
	env := s.spec.Env
	stopping := false // a stop request was received
	var runStart time.Time
	if p != nil {
		runStart = p.StartedAt() // adopted: its real start
	}

	for {
		// Start (or take the adopted process).
		if p == nil {
			s.setState(StateStarting)
			spec := s.spec
			spec.Env = env
			var err error
			p, err = Start(spec)
			if err != nil {
				s.log.Warn("start failed", "err", err)
				s.exited(ExitStartFailed)
				now := s.opts.Clock.Now()
				s.mu.Lock()
				// A command that cannot be executed will not become
				// executable by retrying: FAILED at once, with the reason.
				d := s.core.StartFailed(now, errors.Is(err, ErrExec), err.Error())
				s.mu.Unlock()
				// Put the reason where the user looks: the executor's log.
				appendLog(spec.withDefaults(), "gear: "+err.Error())
				tail := Tail(s.spec.LogFile(), s.opts.TailLines)
				s.update(func(st *Status) { st.LastError = err.Error(); st.PID = 0; st.LogTail = tail })
				if done, rerr := s.afterExit(ctx, d, &pending, &env); done {
					return rerr
				}
				continue
			}
			runStart = s.opts.Clock.Now()
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			s.log.Info("started", "pid", p.PID(), "cpus", FormatCPUList(s.spec.CPUs))
			if s.opts.OnStart != nil {
				s.opts.OnStart(p.PID())
			}
		}
		s.update(func(st *Status) {
			st.State = StateRunning
			st.PID = p.PID()
			st.StartedAt = p.StartedAt()
		})
		for _, r := range pending {
			r.reply <- nil
		}
		pending = nil

		// Wait for the exit, serving requests meanwhile.
		replacing := false // a graceful restart or recycle is under way
		unhealthy := ""    // why it is being stopped as unhealthy
		var check <-chan time.Time
		if s.pol.MaxAge > 0 || s.pol.MaxRSS > 0 {
			check = s.opts.Clock.After(s.opts.CheckInterval)
		}
	wait:
		for {
			select {
			case <-p.Done():
				break wait
			case <-ctx.Done():
				s.log.Info("detached: process left running", "pid", p.PID())
				return ctx.Err()
			case r := <-s.reqs:
				switch {
				case r.kind == reqStop:
					stopping = true
					s.setState(StateStopping)
					stopWith(r)
					r.reply <- nil
				case stopping:
					r.reply <- fmt.Errorf("restart %s: it is being stopped", s.spec.ID)
				case r.kind == reqUnhealthy:
					if !replacing && unhealthy == "" {
						unhealthy = r.reason
						s.log.Warn("stopping unhealthy process", "pid", p.PID(), "reason", r.reason)
						s.update(func(st *Status) { st.LastError = "unhealthy: " + r.reason })
						stopWith(request{ctx: context.WithoutCancel(r.ctx)})
					}
					r.reply <- nil
				default:
					if r.env != nil {
						env = r.env
					}
					pending = append(pending, r)
					if !replacing {
						replacing = true
						s.log.Info("restarting on request", "pid", p.PID())
						stopWith(request{ctx: context.WithoutCancel(r.ctx)})
					}
				}
			case <-check:
				check = s.opts.Clock.After(s.opts.CheckInterval)
				if reason := s.recycleReason(p, runStart); reason != "" && !replacing && !stopping {
					replacing = true
					s.log.Info("recycling", "pid", p.PID(), "reason", reason)
					s.update(func(st *Status) { st.LastError = "recycled: " + reason })
					stopWith(request{ctx: context.Background()})
				}
			}
		}

		es := p.Wait()
		now := s.opts.Clock.Now()
		uptime := now.Sub(runStart)
		s.log.Info("exited", "pid", p.PID(), "status", es.String(), "uptime", uptime.Round(time.Millisecond))
		tail := Tail(s.spec.LogFile(), s.opts.TailLines)
		s.mu.Lock()
		s.proc = nil
		s.mu.Unlock()
		p = nil
		s.update(func(st *Status) { st.LastExit = es.String(); st.LogTail = tail; st.PID = 0 })
		switch {
		case stopping:
			s.exited(ExitStopped)
			s.setState(StateStopped)
			return nil
		case replacing:
			s.exited(ExitReplaced)
			continue
		}
		reason := exitReason(es)
		if unhealthy != "" {
			reason = ExitUnhealthy
			s.update(func(st *Status) { st.LastExit = "stopped as unhealthy (" + es.String() + ")" })
		}
		s.exited(reason)
		s.mu.Lock()
		d := s.core.Exited(now, uptime, es.Success() && unhealthy == "")
		s.mu.Unlock()
		if done, rerr := s.afterExit(ctx, d, &pending, &env); done {
			return rerr
		}
	}
}

// afterExit applies a decision: FAILED, STOPPED, or BACKOFF then restart. It
// returns done=true with Run's result when Run must return.
func (s *Supervisor) afterExit(ctx context.Context, d Decision, pending *[]request, env *[]string) (bool, error) {
	switch {
	case d.GiveUp:
		s.log.Error("giving up", "reason", d.Reason)
		s.update(func(st *Status) { st.State = StateFailed; st.LastError = d.Reason })
		return true, fmt.Errorf("%s: %w: %s", s.spec.ID, ErrFailed, d.Reason)
	case !d.Restart:
		s.setState(StateStopped)
		return true, nil
	}
	if d.Delay > 0 {
		s.setState(StateBackoff)
		s.log.Info("backing off", "delay", d.Delay)
		timer := s.opts.Clock.After(d.Delay)
	backoff:
		for {
			select {
			case <-timer:
				break backoff
			case <-ctx.Done():
				return true, ctx.Err()
			case r := <-s.reqs:
				if r.kind == reqStop {
					s.setState(StateStopped)
					r.reply <- nil
					return true, nil
				}
				if r.kind == reqUnhealthy {
					r.reply <- fmt.Errorf("unhealthy %s: no process is running", s.spec.ID)
					continue
				}
				if r.env != nil {
					*env = r.env
				}
				*pending = append(*pending, r)
				break backoff
			}
		}
	}
	s.mu.Lock()
	s.core.Restarted(s.opts.Clock.Now())
	s.mu.Unlock()
	if s.opts.OnRestart != nil {
		s.opts.OnRestart()
	}
	return false, nil
}

// recycleReason says why p, started at runStart by the supervisor's clock,
// must be replaced, or "" if it may keep running.
func (s *Supervisor) recycleReason(p *Process, runStart time.Time) string {
	if s.pol.MaxAge > 0 {
		if age := s.opts.Clock.Now().Sub(runStart); age >= s.pol.MaxAge {
			return fmt.Sprintf("age %s reached max age %s", age.Round(time.Second), s.pol.MaxAge)
		}
	}
	if s.pol.MaxRSS > 0 {
		if rss, err := p.RSS(); err == nil && rss > s.pol.MaxRSS {
			return fmt.Sprintf("rss %d bytes above max rss %d", rss, s.pol.MaxRSS)
		}
	}
	return ""
}

// Stop stops the executor (graceful: pre-stop hook, SIGTERM, StopTimeout,
// SIGKILL; hard: SIGKILL now) and returns when it is STOPPED, or when ctx
// ends. It works whether or not Run is running (e.g. after Run detached).
func (s *Supervisor) Stop(ctx context.Context, hard bool) error {
	r := request{kind: reqStop, hard: hard, ctx: ctx, reply: make(chan error, 1)}
	s.mu.Lock()
	running := s.started && !s.ended
	s.mu.Unlock()
	if running {
		select {
		case s.reqs <- r:
			select {
			case <-s.runDone:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("stop %s: %w", s.spec.ID, ctx.Err())
			}
		case <-s.runDone:
		case <-ctx.Done():
			return fmt.Errorf("stop %s: %w", s.spec.ID, ctx.Err())
		}
	}
	// Run is not running: stop whatever process is left directly.
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	s.setState(StateStopping)
	if err := p.Stop(ctx, hard); err != nil {
		return err
	}
	es := p.Wait()
	s.mu.Lock()
	if s.proc == p {
		s.proc = nil
	}
	s.mu.Unlock()
	s.exited(ExitStopped)
	s.update(func(st *Status) { st.State = StateStopped; st.LastExit = es.String(); st.PID = 0 })
	return nil
}

// Unhealthy stops the current process gracefully because its health
// check failed, and then treats the exit as a failure under the Policy:
// restarted with backoff by "always" and "on-failure", counted toward the
// crash-loop limit, not restarted by "never". It returns once the stop has
// begun; a process already being stopped or replaced is left alone.
func (s *Supervisor) Unhealthy(ctx context.Context, reason string) error {
	r := request{kind: reqUnhealthy, reason: reason, ctx: ctx, reply: make(chan error, 1)}
	s.mu.Lock()
	running := s.started && !s.ended && s.proc != nil
	s.mu.Unlock()
	if !running {
		return fmt.Errorf("unhealthy %s: no process is running", s.spec.ID)
	}
	select {
	case s.reqs <- r:
	case <-s.runDone:
		return fmt.Errorf("unhealthy %s: supervisor ended", s.spec.ID)
	case <-ctx.Done():
		return fmt.Errorf("unhealthy %s: %w", s.spec.ID, ctx.Err())
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("unhealthy %s: %w", s.spec.ID, ctx.Err())
	}
}

// Restart replaces the process gracefully (stop as in Stop, then start at
// once, without backoff), giving the new one env as its whole environment
// (nil: keep the current one). It returns once the new process is RUNNING.
// It fails when Run is not running (e.g. after FAILED: create a new
// Supervisor).
func (s *Supervisor) Restart(ctx context.Context, env []string) error {
	r := request{kind: reqRestart, env: env, ctx: ctx, reply: make(chan error, 1)}
	s.mu.Lock()
	running := s.started && !s.ended
	s.mu.Unlock()
	if !running {
		return fmt.Errorf("restart %s: not supervised (Run is not running)", s.spec.ID)
	}
	select {
	case s.reqs <- r:
	case <-s.runDone:
		return fmt.Errorf("restart %s: supervisor ended", s.spec.ID)
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", s.spec.ID, ctx.Err())
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", s.spec.ID, ctx.Err())
	}
}
