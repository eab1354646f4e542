package main

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Timing of the probes. A write is launched every writeEvery (to the
// surviving members in turn) without waiting for the previous one, each
// with its own timeout, so a request that hangs (etcd holds a request made
// while it has no leader until the request times out) does not delay the
// next: the first write accepted is the first one launched after the
// system could accept writes, give or take writeEvery. maxInFlight exceeds
// writeTimeout/writeEvery so that the cadence is never throttled.
const (
	writeEvery     = 5 * time.Millisecond
	writeTimeout   = time.Second
	maxInFlight    = 256
	failoverLimit  = 30 * time.Second // a kill round without an accepted write by then is a miss
	healthyLimit   = 60 * time.Second
	statusTimeout  = 250 * time.Millisecond
	watchEvery     = 50 * time.Millisecond
	startupTimeout = 60 * time.Second
)

// writeStats says how a firstWrite went: attempts launched, the most in
// flight at once (maxInFlight means probing was throttled) and the last
// refusal before the write went through.
type writeStats struct {
	Attempts, PeakInFlight int
	LastErr                error
}

// firstWrite launches writes to targets until one is accepted and returns
// the time its answer arrived. It gives up after limit.
func firstWrite(ctx context.Context, b backend, targets []int, limit time.Duration) (time.Time, writeStats, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	type answer struct {
		at  time.Time
		err error
	}
	answers := make(chan answer, maxInFlight) // room for every attempt in flight: senders never block
	var st writeStats
	inFlight := 0
	launch := func() {
		target := targets[st.Attempts%len(targets)]
		st.Attempts++
		inFlight++
		st.PeakInFlight = max(st.PeakInFlight, inFlight)
		wg.Go(func() {
			actx, acancel := context.WithTimeout(ctx, writeTimeout)
			err := b.write(actx, target)
			acancel()
			answers <- answer{time.Now(), err}
		})
	}
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	launch()
	for {
		select {
		case a := <-answers:
			inFlight--
			if a.err == nil {
				return a.at, st, nil
			}
			st.LastErr = a.err
		case <-tick.C:
			if inFlight < maxInFlight {
				launch()
			}
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return time.Time{}, st, fmt.Errorf("%s: no write accepted within %v after %d attempts; last error: %v", b.name(), limit, st.Attempts, st.LastErr)
			}
			return time.Time{}, st, ctx.Err()
		}
	}
}

// killResult is one kill -9 round.
type killResult struct {
	Failover time.Duration // kill -> first accepted write
	Recovery time.Duration // restart of the killed member -> group healthy again
	Miss     error         // non-nil: no write was accepted within failoverLimit
	Writes   writeStats
}

// killRound kill -9s the leader, measures until a surviving member accepts
// a write, restarts the killed member and waits until the group is healthy.
func killRound(ctx context.Context, g *group) (killResult, error) {
	leader, _, err := g.waitHealthy(ctx, healthyLimit)
	if err != nil {
		return killResult{}, err
	}
	var survivors []int
	for i := range size {
		if i != leader {
			survivors = append(survivors, i)
		}
	}
	t0 := time.Now()
	if err := g.signal(leader, syscall.SIGKILL); err != nil {
		return killResult{}, err
	}
	at, ws, werr := firstWrite(ctx, g.b, survivors, failoverLimit)
	res := killResult{Writes: ws}
	switch {
	case werr == nil:
		res.Failover = at.Sub(t0)
	case ctx.Err() != nil:
		return res, ctx.Err()
	default:
		res.Miss = werr
	}
	if err := g.reaped(ctx, leader); err != nil {
		return res, err
	}
	t1 := time.Now()
	if err := g.start(leader); err != nil {
		return res, err
	}
	if _, _, err := g.waitHealthy(ctx, healthyLimit); err != nil {
		return res, fmt.Errorf("after restarting the killed member: %w", err)
	}
	res.Recovery = time.Since(t1)
	return res, nil
}

// pauseResult is one SIGSTOP round.
type pauseResult struct {
	TermBumps   uint64 // highest term seen minus the term before the pause
	LeaderMoved bool   // some member named another leader meanwhile
}

// termWatch samples every member's status until stopped, for rounds that
// must cause no election: the highest term seen, and whether any member
// named a leader other than the one at the start.
type termWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    pauseResult
}

func watchTerms(ctx context.Context, g *group, leader memberStatus) *termWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &termWatch{cancel: cancel}
	w.wg.Go(func() {
		tick := time.NewTicker(watchEvery)
		defer tick.Stop()
		for {
			sts, errs := g.statuses(ctx, statusTimeout)
			w.mu.Lock()
			for i := range size {
				if errs[i] != nil {
					continue
				}
				w.res.TermBumps = max(w.res.TermBumps, sts[i].Term-min(sts[i].Term, leader.Term))
				if sts[i].Leader != "" && sts[i].Leader != leader.ID {
					w.res.LeaderMoved = true
				}
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return w
}

// stop ends the watch (again, harmlessly) and returns what it saw.
func (w *termWatch) stop() pauseResult {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.res
}

// disrupted reports whether the pause caused any election.
func (p pauseResult) disrupted() bool { return p.TermBumps > 0 || p.LeaderMoved }

// pauseRound SIGSTOPs the leader for pause, SIGCONTs it, and watches every
// member's view for observe afterwards, counting term increases and other
// leaders. It waits until the group is healthy again before returning.
func pauseRound(ctx context.Context, g *group, pause, observe time.Duration) (pauseResult, error) {
	leader, st, err := g.waitHealthy(ctx, healthyLimit)
	if err != nil {
		return pauseResult{}, err
	}
	w := watchTerms(ctx, g, st)
	defer w.stop()
	if err := g.signal(leader, syscall.SIGSTOP); err != nil {
		return pauseResult{}, err
	}
	t := time.NewTimer(pause)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	if err := g.signal(leader, syscall.SIGCONT); err != nil {
		return pauseResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return pauseResult{}, err
	}
	t = time.NewTimer(observe)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return pauseResult{}, ctx.Err()
	}
	res := w.stop()
	if _, _, err := g.waitHealthy(ctx, healthyLimit); err != nil {
		return res, fmt.Errorf("after the pause: %w", err)
	}
	return res, nil
}

// startupResult is one cold start of a fresh group.
type startupResult struct {
	Leader time.Duration // spawn -> a member reports itself leader
	Write  time.Duration // spawn -> first accepted write
}

// startupRound starts the (fresh) group's members at once and measures
// until one reports itself leader and until a write is accepted. The
// caller closes g.
func startupRound(ctx context.Context, g *group) (startupResult, error) {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	t0 := time.Now()
	if err := g.startAll(); err != nil {
		return startupResult{}, err
	}
	var res startupResult
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for res.Leader == 0 {
		sts, errs := g.statuses(ctx, statusTimeout)
		for i := range size {
			if errs[i] == nil && sts[i].Leader != "" && sts[i].Leader == sts[i].ID {
				res.Leader = time.Since(t0)
			}
		}
		if res.Leader != 0 {
			break
		}
		select {
		case <-ctx.Done():
			if ctx.Err() != context.DeadlineExceeded {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("%s: no leader within %v of start; see the member logs in %s (-keep)", g.b.name(), startupTimeout, g.dir)
		case <-tick.C:
		}
	}
	at, _, err := firstWrite(ctx, g.b, []int{0, 1, 2}, startupTimeout)
	if err != nil {
		return res, err
	}
	res.Write = at.Sub(t0)
	return res, nil
}
