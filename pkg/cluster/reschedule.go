package cluster

import (
	"errors"
	"fmt"
	"time"
)

// Reschedule is a process group's reschedule policy, gear-app.conf's
// reschedule { } block (Nomad's reschedule stanza): an executor that gave
// up on its worker (FAILED: a crash loop, a command that cannot start) is
// placed on another eligible worker, at most Attempts times within
// Interval, each after a delay. Only when the attempts are spent, or no
// other worker is registered, is it FAILED for good, and its app with it.
// The attempts are replicated with the executor (Executor.Reschedules), so
// a master failover does not reset them.
type Reschedule struct {
	Attempts int           `json:"attempts"`           // 0: never reschedule
	Interval time.Duration `json:"interval,omitempty"` // window the attempts are counted in; 0: ever
	Delay    time.Duration `json:"delay,omitempty"`    // before the first attempt starts
	// DelayFunction is "exponential" (each attempt doubles the delay, up
	// to MaxDelay) or "constant".
	DelayFunction string        `json:"delay_function,omitempty"`
	MaxDelay      time.Duration `json:"max_delay,omitempty"`
}

// Delay functions of a reschedule policy.
const (
	DelayExponential = "exponential"
	DelayConstant    = "constant"
)

// DefaultReschedule is the policy of a process group without a
// reschedule block, and the values a block's missing keys take: two
// attempts per hour, the first after 5s, the second after 10s.
var DefaultReschedule = Reschedule{Attempts: 2, Interval: time.Hour, Delay: 5 * time.Second,
	DelayFunction: DelayExponential, MaxDelay: time.Minute}

// ReschedulePolicy is the group's policy, DefaultReschedule if it has none.
func (p Process) ReschedulePolicy() Reschedule {
	if p.Reschedule == nil {
		return DefaultReschedule
	}
	return *p.Reschedule
}

// DelayOf is the delay before attempt n (0 = the first).
func (r Reschedule) DelayOf(n int) time.Duration {
	d := r.Delay
	if r.DelayFunction == DelayExponential {
		for i := 0; i < n && (r.MaxDelay <= 0 || d < r.MaxDelay); i++ {
			d *= 2
		}
	}
	if r.MaxDelay > 0 && d > r.MaxDelay {
		d = r.MaxDelay
	}
	return d
}

// Used counts the attempts that count against the policy at now: those
// within Interval before now (all of them when Interval is 0).
func (r Reschedule) Used(attempts []RescheduleAttempt, now time.Time) int {
	n := 0
	for _, a := range attempts {
		if r.Interval <= 0 || now.Sub(a.Time) < r.Interval {
			n++
		}
	}
	return n
}

// Check refuses a policy the scheduler could not follow.
func (r Reschedule) Check() error {
	switch {
	case r.Attempts < 0:
		return fmt.Errorf("attempts must not be negative, got %d", r.Attempts)
	case r.Interval < 0 || r.Delay < 0 || r.MaxDelay < 0:
		return errors.New("interval, delay and max-delay must not be negative")
	case r.DelayFunction != DelayExponential && r.DelayFunction != DelayConstant:
		return fmt.Errorf("delay-function must be %q or %q, got %q", DelayExponential, DelayConstant, r.DelayFunction)
	case r.MaxDelay > 0 && r.MaxDelay < r.Delay:
		return fmt.Errorf("max-delay %v is shorter than delay %v", r.MaxDelay, r.Delay)
	}
	return nil
}
