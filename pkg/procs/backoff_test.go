package procs

import (
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// fixedRand returns the same jitter draw every time.
type fixedRand float64

func (f fixedRand) Float64() float64 { return float64(f) }

// Jitter extremes: 0 takes nothing off, 0.999... takes ~20% off.
var jitters = []struct {
	name string
	rand Rand
}{{"no-jitter", nil}, {"min-jitter", fixedRand(0)}, {"max-jitter", fixedRand(0.9999999)}}

func TestBackoffDelays(t *testing.T) {
	pol := DefaultPolicy()
	b := NewBackoff(pol, nil, 0, 0)
	now := time.Unix(1000, 0)
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		d := b.Exited(now, 0, false)
		if !d.Restart || !d.Crash || d.Delay != w*time.Millisecond {
			t.Fatalf("crash %d: got %+v, want restart after %v", i+1, d, w*time.Millisecond)
		}
		b.Restarted(now)
		now = now.Add(d.Delay)
	}
	// A healthy run resets the backoff, and its restart is immediate.
	d := b.Exited(now, 2*time.Second, false)
	if !d.Restart || d.Crash || d.Delay != 0 {
		t.Fatalf("after healthy run: got %+v, want immediate restart", d)
	}
	b.Restarted(now)
	if d := b.Exited(now, 0, false); d.Delay != 100*time.Millisecond {
		t.Fatalf("first crash after reset: delay %v, want 100ms", d.Delay)
	}
	if b.Restarts() != len(want)+1 {
		t.Fatalf("restarts %d, want %d", b.Restarts(), len(want)+1)
	}
}

func TestBackoffJitterShortensOnly(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.9999999} {
		b := NewBackoff(DefaultPolicy(), fixedRand(r), 0, 0)
		d := b.Exited(time.Unix(0, 0), 0, false)
		lo := 80 * time.Millisecond
		if d.Delay < lo || d.Delay > 100*time.Millisecond {
			t.Errorf("rand %v: delay %v outside [%v, 100ms]", r, d.Delay, lo)
		}
	}
}

func TestBackoffPolicies(t *testing.T) {
	tests := []struct {
		restart   cluster.RestartPolicy
		uptime    time.Duration
		success   bool
		wantStart bool
		wantFail  bool
	}{
		{cluster.RestartAlways, 5 * time.Second, true, true, false},
		{cluster.RestartAlways, 5 * time.Second, false, true, false},
		{cluster.RestartOnFailure, 5 * time.Second, true, false, false},
		{cluster.RestartOnFailure, 5 * time.Second, false, true, false},
		{cluster.RestartOnFailure, 0, true, false, false},
		{cluster.RestartNever, 5 * time.Second, true, false, false},
		{cluster.RestartNever, 5 * time.Second, false, false, true},
	}
	for _, tt := range tests {
		b := NewBackoff(Policy{Restart: tt.restart}, nil, 0, 0)
		d := b.Exited(time.Unix(0, 0), tt.uptime, tt.success)
		if d.Restart != tt.wantStart || d.GiveUp != tt.wantFail {
			t.Errorf("%s uptime=%v success=%v: got %+v", tt.restart, tt.uptime, tt.success, d)
		}
	}
}

// runLoop drives a Backoff as the Supervisor does, with a fake clock: each
// run lasts run(now) (0 = exits at once, which still costs startCost), until
// it gives up or horizon passes. It returns when it gave up (or -1) and the
// number of crashes.
func runLoop(t *testing.T, b *Backoff, run func(now time.Duration) time.Duration, horizon time.Duration) (gaveUpAt time.Duration, crashes int) {
	t.Helper()
	const startCost = 5 * time.Millisecond // fork+exec+exit of a real program
	epoch := time.Unix(1_000_000, 0)
	now := time.Duration(0)
	for now < horizon {
		up := run(now)
		if up == 0 {
			up = startCost
		}
		now += up
		d := b.Exited(epoch.Add(now), up, false)
		if d.Crash {
			crashes++
		}
		if d.GiveUp {
			return now, crashes
		}
		if !d.Restart {
			t.Fatalf("unexpected stop: %+v", d)
		}
		now += d.Delay
		b.Restarted(epoch.Add(now))
	}
	return -1, crashes
}

func TestBackoffExitsAtOnceFailsWithin30s(t *testing.T) {
	for _, j := range jitters {
		t.Run(j.name, func(t *testing.T) {
			b := NewBackoff(DefaultPolicy(), j.rand, 0, 0)
			at, crashes := runLoop(t, b, func(time.Duration) time.Duration { return 0 }, 10*time.Minute)
			if at < 0 || at > 30*time.Second {
				t.Fatalf("gave up at %v, want within 30s", at)
			}
			if crashes != 11 {
				t.Fatalf("crashes %d, want 11 (more than MaxRestarts=10)", crashes)
			}
			t.Logf("FAILED after %v and %d runs", at, crashes)
		})
	}
}

func TestBackoffRidesOutTenSecondsOfFailure(t *testing.T) {
	for _, j := range jitters {
		t.Run(j.name, func(t *testing.T) {
			b := NewBackoff(DefaultPolicy(), j.rand, 0, 0)
			failsUntil := 10 * time.Second
			run := func(now time.Duration) time.Duration {
				if now < failsUntil {
					return 0
				}
				return time.Hour // works
			}
			at, crashes := runLoop(t, b, run, 2*time.Hour)
			if at >= 0 {
				t.Fatalf("gave up at %v after %d crashes; want it ridden out", at, crashes)
			}
			if crashes > 10 {
				t.Fatalf("%d crashes", crashes)
			}
			t.Logf("ridden out after %d crashes", crashes)
		})
	}
}

// TestBackoffCrashLoop steps the crash-loop rule with a fake clock: more
// than MaxRestarts runs in a row shorter than MinUptime give up, however long
// the backoff between them; one run of at least MinUptime resets the count.
func TestBackoffCrashLoop(t *testing.T) {
	const (
		short = 200 * time.Millisecond
		long  = time.Hour
	)
	fast := Policy{MinUptime: time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxRestarts: 3}
	// The slow crash loop of issue 11: minutes between crashes, far beyond
	// any window.
	slow := Policy{MinUptime: time.Second, BackoffMin: 2 * time.Minute, BackoffMax: 10 * time.Minute, Window: time.Minute, MaxRestarts: 10}
	repeat := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	cat := func(parts ...[]time.Duration) []time.Duration {
		var out []time.Duration
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name    string
		pol     Policy
		initial int             // crash count restored from replicated state
		runs    []time.Duration // uptime of each run
		giveUp  int             // index of the run that gives up, -1 for none
		crashes int             // Crashes() after the last run stepped
	}{
		{"exits at once", fast, 0, repeat(short, 10), 3, 4},
		{"slow crash loop gives up", slow, 0, repeat(short, 20), 10, 11},
		{"a long run resets the count", fast, 0, cat(repeat(short, 3), []time.Duration{long}, repeat(short, 3)), -1, 3},
		{"the fourth in a row after a reset", fast, 0, cat(repeat(short, 3), []time.Duration{long}, repeat(short, 4)), 7, 4},
		{"exactly min-uptime is not a crash", fast, 0, cat(repeat(short, 3), []time.Duration{time.Second}, repeat(short, 3)), -1, 3},
		{"restored count carries on", fast, 2, repeat(short, 5), 1, 4},
		{"restored count reset by a long run", fast, 2, cat([]time.Duration{long}, repeat(short, 5)), 4, 4},
		{"max-restarts 0: the first crash", Policy{MaxRestarts: 0, MinUptime: time.Second}, 0, repeat(short, 3), 0, 1},
		{"max-restarts 1", Policy{MaxRestarts: 1, MinUptime: time.Second}, 0, repeat(short, 3), 1, 2},
		{"unlimited", Policy{MaxRestarts: -1, MinUptime: time.Second}, 0, repeat(short, 500), -1, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBackoff(tt.pol, fixedRand(0.5), 0, tt.initial)
			now := time.Unix(1_000_000, 0)
			start := now
			got := -1
			for i, up := range tt.runs {
				now = now.Add(up)
				d := b.Exited(now, up, false)
				if d.Crash != (up < time.Second) {
					t.Fatalf("run %d (%v): crash %v", i, up, d.Crash)
				}
				if d.GiveUp {
					if d.Restart || !strings.Contains(d.Reason, "crash loop") {
						t.Fatalf("run %d: give-up decision %+v", i, d)
					}
					got = i
					break
				}
				if !d.Restart {
					t.Fatalf("run %d: neither restart nor give up: %+v", i, d)
				}
				now = now.Add(d.Delay)
				b.Restarted(now)
			}
			if got != tt.giveUp {
				t.Fatalf("gave up at run %d, want %d", got, tt.giveUp)
			}
			if b.Crashes() != tt.crashes {
				t.Fatalf("Crashes() = %d, want %d", b.Crashes(), tt.crashes)
			}
			t.Logf("over %v", now.Sub(start))
		})
	}
}

// The slow crash loop spans far more than the window and still gives up
// after MaxRestarts restarts.
func TestBackoffSlowCrashLoopOutlastsWindow(t *testing.T) {
	pol := Policy{MinUptime: time.Second, BackoffMin: 2 * time.Minute, BackoffMax: 10 * time.Minute, Window: time.Minute, MaxRestarts: 10}
	b := NewBackoff(pol, nil, 0, 0)
	at, crashes := runLoop(t, b, func(time.Duration) time.Duration { return 0 }, 24*time.Hour)
	if at < 0 || crashes != 11 {
		t.Fatalf("gave up at %v after %d crashes, want after 11", at, crashes)
	}
	if at < time.Hour {
		t.Fatalf("gave up at %v: the backoff alone is over an hour", at)
	}
	if b.Restarts() != 10 {
		t.Fatalf("restarts %d, want 10", b.Restarts())
	}
}

func TestBackoffStartFailed(t *testing.T) {
	for _, pol := range []Policy{DefaultPolicy(), {MaxRestarts: -1}, {Restart: cluster.RestartNever}} {
		b := NewBackoff(pol, nil, 0, 0)
		d := b.StartFailed(time.Unix(0, 0), true, "exec ./server: no such file or directory")
		if !d.GiveUp || d.Restart || d.Reason != "exec ./server: no such file or directory" {
			t.Errorf("%+v: permanent start failure: %+v, want give up with the reason", pol, d)
		}
		b = NewBackoff(pol, nil, 0, 0)
		if d := b.StartFailed(time.Unix(0, 0), false, "port 80 busy"); d.GiveUp != (pol.Restart == cluster.RestartNever) || !d.Crash {
			t.Errorf("%+v: transient start failure: %+v, want a crash", pol, d)
		}
	}
}

func TestBackoffUnlimited(t *testing.T) {
	b := NewBackoff(Policy{MaxRestarts: -1}, nil, 7, 0)
	t0 := time.Unix(0, 0)
	for i := range 1000 {
		if d := b.Exited(t0.Add(time.Duration(i)*time.Millisecond), 0, false); d.GiveUp || d.Delay > 5*time.Second {
			t.Fatalf("crash %d: %+v", i, d)
		}
		b.Restarted(t0.Add(time.Duration(i) * time.Millisecond))
	}
	if b.Restarts() != 1007 {
		t.Fatalf("restarts %d, want 1007 (7 initial)", b.Restarts())
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		pol  Policy
		okay bool
	}{
		{DefaultPolicy(), true},
		{Policy{}, true},
		{Policy{Restart: "sometimes"}, false},
		{Policy{BackoffMin: time.Second, BackoffMax: time.Millisecond}, false},
		{Policy{Window: -time.Second}, false},
	}
	for _, tt := range tests {
		if err := tt.pol.Validate(); (err == nil) != tt.okay {
			t.Errorf("%+v: err %v", tt.pol, err)
		}
	}
}
