package procs

import (
	"fmt"
	"time"
)

// Restart policies (Policy.Restart).
const (
	RestartAlways    = "always"     // restart after any exit
	RestartOnFailure = "on-failure" // restart unless the exit code was 0
	RestartNever     = "never"      // never restart
)

// Policy says when and how fast a Supervisor restarts its process.
type Policy struct {
	// Restart is RestartAlways, RestartOnFailure or RestartNever
	// (empty: always).
	Restart string
	// BackoffMin is the delay after a first crash; it doubles for each
	// further consecutive crash, up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// MinUptime: a run shorter than this is a crash. A longer run resets
	// the backoff.
	MinUptime time.Duration
	// Window and MaxRestarts: more than MaxRestarts crashes within Window
	// and the executor is FAILED. MaxRestarts < 0 means never give up.
	Window      time.Duration
	MaxRestarts int
	// MaxAge and MaxRSS (bytes) recycle the process (graceful restart) when
	// exceeded; zero disables each.
	MaxAge time.Duration
	MaxRSS int64
}

// DefaultPolicy is what the worker uses when a bundle says nothing.
func DefaultPolicy() Policy {
	return Policy{
		Restart:     RestartAlways,
		BackoffMin:  100 * time.Millisecond,
		BackoffMax:  5 * time.Second,
		MinUptime:   time.Second,
		Window:      60 * time.Second,
		MaxRestarts: 10,
	}
}

// withDefaults fills zero fields from DefaultPolicy (MaxRestarts 0 included:
// use a negative value for "unlimited").
func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.Restart == "" {
		p.Restart = d.Restart
	}
	if p.BackoffMin <= 0 {
		p.BackoffMin = d.BackoffMin
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = max(d.BackoffMax, p.BackoffMin)
	}
	if p.MinUptime <= 0 {
		p.MinUptime = d.MinUptime
	}
	if p.Window <= 0 {
		p.Window = d.Window
	}
	if p.MaxRestarts == 0 {
		p.MaxRestarts = d.MaxRestarts
	}
	return p
}

// Validate reports a policy that cannot work.
func (p Policy) Validate() error {
	switch p.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return fmt.Errorf("restart policy %q: want %q, %q or %q", p.Restart, RestartAlways, RestartOnFailure, RestartNever)
	}
	if p.BackoffMin < 0 || p.BackoffMax < 0 || p.MinUptime < 0 || p.Window < 0 || p.MaxAge < 0 || p.MaxRSS < 0 {
		return fmt.Errorf("restart policy: durations and sizes must not be negative")
	}
	if p.BackoffMax > 0 && p.BackoffMin > p.BackoffMax {
		return fmt.Errorf("restart policy: backoff min %s is above backoff max %s", p.BackoffMin, p.BackoffMax)
	}
	return nil
}

// Rand is the source of backoff jitter; *math/rand/v2.Rand satisfies it.
type Rand interface {
	Float64() float64 // in [0, 1)
}

// jitterFraction is the most jitter takes off a delay.
const jitterFraction = 0.2

// Decision is Backoff's answer to an exit.
type Decision struct {
	// Restart: start the process again after Delay.
	Restart bool
	Delay   time.Duration
	// Crash: the run was shorter than MinUptime.
	Crash bool
	// GiveUp: the executor is FAILED (crash loop, or a failure under
	// restart "never"); Reason says why. Neither Restart nor GiveUp: the
	// process ended as the policy allows (STOPPED).
	GiveUp bool
	Reason string
}

// Backoff is the restart decision core: deterministic, without goroutines,
// clocks or I/O. It is told about exits and restarts with explicit times and
// answers what to do next. The zero value is not usable; see NewBackoff.
type Backoff struct {
	pol         Policy
	rand        Rand
	consecutive int         // consecutive crashes
	crashes     []time.Time // crash times, oldest first, within Window
	restarts    []time.Time // restart times, oldest first, within Window
	total       int
}

// NewBackoff returns a core for pol (zero fields take DefaultPolicy's
// values). rand may be nil for no jitter. initialRestarts is the restart count
// so far, e.g. restored from replicated state.
func NewBackoff(pol Policy, rand Rand, initialRestarts int) *Backoff {
	return &Backoff{pol: pol.withDefaults(), rand: rand, total: initialRestarts}
}

// Policy returns the effective policy.
func (b *Backoff) Policy() Policy { return b.pol }

// Exited is called when a run ended at now after uptime; success is a known
// exit code 0. A start that failed is an exit with zero uptime and no success.
func (b *Backoff) Exited(now time.Time, uptime time.Duration, success bool) Decision {
	var d Decision
	d.Crash = uptime < b.pol.MinUptime
	if d.Crash {
		b.consecutive++
		b.crashes = append(b.crashes, now)
	} else {
		b.consecutive = 0
	}
	b.prune(now)
	switch {
	case b.pol.Restart == RestartNever || (b.pol.Restart == RestartOnFailure && success):
		if !success {
			d.GiveUp = true
			d.Reason = fmt.Sprintf("exited with failure under restart policy %q", b.pol.Restart)
		}
		return d
	case d.Crash && b.pol.MaxRestarts >= 0 && len(b.crashes) > b.pol.MaxRestarts:
		d.GiveUp = true
		d.Reason = fmt.Sprintf("crash loop: %d runs shorter than %s within %s (limit %d); fix the program, then restart it",
			len(b.crashes), b.pol.MinUptime, b.pol.Window, b.pol.MaxRestarts)
		return d
	}
	d.Restart = true
	if d.Crash {
		d.Delay = b.delay()
	}
	return d
}

// delay is BackoffMin doubled per consecutive crash beyond the first, capped
// at BackoffMax, minus up to jitterFraction of it.
func (b *Backoff) delay() time.Duration {
	d := b.pol.BackoffMin
	for i := 1; i < b.consecutive && d < b.pol.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, b.pol.BackoffMax)
	if b.rand != nil {
		d -= time.Duration(float64(d) * jitterFraction * b.rand.Float64())
	}
	return d
}

// Restarted records that the process was started again at now after an exit.
func (b *Backoff) Restarted(now time.Time) {
	b.total++
	b.restarts = append(b.restarts, now)
	b.prune(now)
}

// Restarts is the total number of restarts, initial ones included.
func (b *Backoff) Restarts() int { return b.total }

// RecentRestarts is the number of restarts within Window before now.
func (b *Backoff) RecentRestarts(now time.Time) int {
	n := 0
	for _, t := range b.restarts {
		if now.Sub(t) < b.pol.Window {
			n++
		}
	}
	return n
}

// RecentCrashes is the number of crashes within Window before now.
func (b *Backoff) RecentCrashes(now time.Time) int {
	n := 0
	for _, t := range b.crashes {
		if now.Sub(t) < b.pol.Window {
			n++
		}
	}
	return n
}

func (b *Backoff) prune(now time.Time) {
	b.crashes = pruneBefore(b.crashes, now.Add(-b.pol.Window))
	b.restarts = pruneBefore(b.restarts, now.Add(-b.pol.Window))
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cutoff) {
		i++
	}
	return append(ts[:0], ts[i:]...)
}
