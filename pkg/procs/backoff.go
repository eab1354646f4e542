package procs

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// Policy says when and how fast a Supervisor restarts its process.
type Policy struct {
	// Restart is cluster.RestartAlways, RestartOnFailure or RestartNever
	// (empty: always). The type is the process definition's, so the policy
	// is checked in one place (RestartPolicy.Check).
	Restart cluster.RestartPolicy
	// BackoffMin is the delay after a first crash; it doubles for each
	// further consecutive crash, up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// MinUptime: a run shorter than this is a crash. A longer run resets
	// the backoff and the crash count.
	MinUptime time.Duration
	// MaxRestarts: a crash that would need more than MaxRestarts restarts
	// in a row (more than MaxRestarts consecutive crashes) makes the
	// executor FAILED, however long the backoff between the crashes.
	// 0: FAILED on the first crash; < 0: never give up.
	MaxRestarts int
	// Window is the period RecentRestarts counts over. It does not decide
	// FAILED: crashes are counted in a row, not within a window, so a slow
	// crash loop gives up too.
	Window time.Duration
	// MaxAge and MaxRSS (bytes) recycle the process (graceful restart) when
	// exceeded; zero disables each.
	MaxAge time.Duration
	MaxRSS int64
}

// DefaultPolicy is what the worker uses when a bundle says nothing.
func DefaultPolicy() Policy {
	return Policy{
		Restart:     cluster.RestartAlways,
		BackoffMin:  100 * time.Millisecond,
		BackoffMax:  5 * time.Second,
		MinUptime:   time.Second,
		Window:      60 * time.Second,
		MaxRestarts: 10,
	}
}

// withDefaults fills zero fields from DefaultPolicy, except MaxRestarts:
// 0 there means FAILED on the first crash, as gear.executor.max-restarts = 0
// does (negative: never give up).
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
	return p
}

// Validate reports a policy that cannot work.
func (p Policy) Validate() error {
	if err := p.Restart.Check(); err != nil {
		return fmt.Errorf("restart policy: %w", err)
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
// A Rand is used by one Supervisor (under its lock), so it need not be safe
// for concurrent use.
type Rand interface {
	Float64() float64 // in [0, 1)
}

// NewRand returns a jitter source for one Supervisor, seeded from
// crypto/rand, so that executors that crash together (a shared dependency
// went away) do not all restart at the same instant. Tests pass a
// *rand.Rand with a fixed seed instead.
func NewRand() *rand.Rand {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails: crypto/rand.Read crashes the program rather than return an error
	return rand.New(rand.NewChaCha8(seed))
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
	// GiveUp: the executor is FAILED (crash loop, a command that cannot be
	// executed, or a failure under restart "never"); Reason says why. Neither Restart nor GiveUp: the
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
	consecutive int         // consecutive crashes: the crash-loop count
	restarts    []time.Time // restart times, oldest first, within Window
	total       int
}

// NewBackoff returns a core for pol (zero fields take DefaultPolicy's
// values). rand may be nil for no jitter. initialRestarts and initialCrashes
// are the restart count and the consecutive crash count so far, restored from
// replicated state so that neither a master failover nor a worker restart
// forgets a crash loop under way.
func NewBackoff(pol Policy, rand Rand, initialRestarts, initialCrashes int) *Backoff {
	return &Backoff{pol: pol.withDefaults(), rand: rand, total: initialRestarts, consecutive: max(initialCrashes, 0)}
}

// Policy returns the effective policy.
func (b *Backoff) Policy() Policy { return b.pol }

// Exited is called when a run ended at now after uptime; success is a known
// exit code 0. A start that failed for a reason that may pass (a busy port)
// is an exit with zero uptime and no success; see StartFailed.
func (b *Backoff) Exited(now time.Time, uptime time.Duration, success bool) Decision {
	var d Decision
	d.Crash = uptime < b.pol.MinUptime
	if d.Crash {
		b.consecutive++
	} else {
		b.consecutive = 0
	}
	b.prune(now)
	switch {
	case b.pol.Restart == cluster.RestartNever || (b.pol.Restart == cluster.RestartOnFailure && success):
		if !success {
			d.GiveUp = true
			d.Reason = fmt.Sprintf("exited with failure under restart policy %q", b.pol.Restart)
		}
		return d
	case d.Crash && b.pol.MaxRestarts >= 0 && b.consecutive > b.pol.MaxRestarts:
		d.GiveUp = true
		d.Reason = fmt.Sprintf("crash loop: %d runs in a row shorter than min-uptime %s (max-restarts %d); fix the program, then restart it",
			b.consecutive, b.pol.MinUptime, b.pol.MaxRestarts)
		return d
	}
	d.Restart = true
	if d.Crash {
		d.Delay = b.delay()
	}
	return d
}

// StartFailed is called when the process could not be started at now.
// A permanent failure (the command cannot be executed: not found, not
// executable, not a program) gives up at once with reason: restarting
// cannot fix it. Any other failure counts as a crash (see Exited).
func (b *Backoff) StartFailed(now time.Time, permanent bool, reason string) Decision {
	if permanent {
		b.consecutive++
		return Decision{Crash: true, GiveUp: true, Reason: reason}
	}
	return b.Exited(now, 0, false)
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

// Crashes is the number of consecutive crashes so far (the crash-loop
// count): a run of at least MinUptime resets it.
func (b *Backoff) Crashes() int { return b.consecutive }

func (b *Backoff) prune(now time.Time) {
	b.restarts = pruneBefore(b.restarts, now.Add(-b.pol.Window))
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cutoff) {
		i++
	}
	return append(ts[:0], ts[i:]...)
}
