// Heartbeats: the worker's one contact with the leader. Each carries the
// state of every executor; the reply lists what to run, how the leader sees
// this worker in the gossip pool, and how fresh the leader's quorum is.

package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// heartbeatLoop reports to the leader and applies its answer. When no
// master answers it backs off (up to half a second) and says so in the log;
// after StopAfterDisconnect without a leader it fences: it stops every
// executor, because the masters are about to run them elsewhere.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	// Retries stay frequent enough that a link that flaps (up for half a
	// second at a time) carries a heartbeat in most of its up phases.
	retryCap := max(2*w.opts.HeartbeatInterval, 500*time.Millisecond)
	interval := w.opts.HeartbeatInterval
	delay := time.Duration(0)
	failures, slow := 0, 0
	var lastSent time.Time
	w.mu.Lock()
	w.lastContact = time.Now()
	w.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		case <-w.kick:
			// Every executor start or exit kicks a heartbeat; kicks that
			// come close together share one (see kickGap).
			if wait := w.kickGap() - time.Since(lastSent); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		// This heartbeat reports everything up to now, also what kicked
		// meanwhile.
		select {
		case <-w.kick:
		default:
		}
		hctx, cancel := context.WithTimeout(ctx, w.attemptTimeout())
		sent := time.Now()
		lastSent = sent
		digest := w.assignDigest
		if digest == "" {
			digest = "-" // none yet: ask for the digest with the assignments
		}
		// Reports the leader acknowledged are left out while they stay
		// the same, and only the changed ones are sent while others stay
		// (reports.go).
		hb := w.heartbeat()
		out := w.reports.prepare(hb.Executors)
		hb.Executors, hb.ReportsBase, hb.Removed = out.executors, out.base, out.removed
		reply, err := w.sendHeartbeat(hctx, hb, digest, out.header)
		cancel()
		if err == nil && w.reports.answered(out, reply) {
			// Not held by this leader (a new one): list them at once.
			w.kickHeartbeat()
		}
		if deltaRefused(out, err) {
			// A master older than report deltas refuses the fields
			// (cluster.Heartbeat.ReportsBase): list them all, at once.
			w.log.Info("a master refused a heartbeat with only the changed executor reports; sending all of them", "err", err)
			w.reports.forget()
			delay = 0
			continue
		}
		w.metrics.heartbeat(sent, err)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			w.health.connected.Store(false) // /ecv: UNAVAILABLE until a leader answers
			delay = min(interval<<min(failures, 3), retryCap)
			var apiErr *cluster.APIError
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden {
				// The leader is there but does not take this worker for
				// who it says it is: retrying will not help by itself, and
				// the executors are fenced like after a lost contact.
				if failures == 1 || failures%20 == 0 {
					w.log.Error("the leader refuses this worker's identity; another worker holds its id", "id", w.id, "data", w.opts.DataDir, "attempt", failures, "err", err)
				}
			} else if failures == 1 || failures%20 == 0 {
				w.log.Warn("cannot reach the leader through any master; retrying with backoff", "masters", w.client.Masters(), "retry_in", delay, "attempt", failures, "err", err)
			}
			w.maybeFence()
			delay = min(delay, max(w.untilFence(), 0))
			continue
		}
		// The contact counts from when the leader last confirmed that a
		// quorum of masters follows it (see master/quorum.go): a leader
		// cut off from the others answers until its lease ends, while a
		// new one may already be counting towards rescheduling.
		now := time.Now()
		if took := now.Sub(sent); took > w.heartbeatTimeout() {
			slow++
			if slow == 1 || slow%20 == 0 {
				w.log.Info("a heartbeat took longer than the heartbeat timeout; waited for it", "took", took.Round(time.Millisecond), "timeout", w.heartbeatTimeout(), "slow_heartbeats", slow)
			}
		}
		contact, ok := leaderContact(sent, now, reply.QuorumAgeMS, w.opts.StopAfterDisconnect, w.heartbeatTimeout())
		if !ok {
			failures++
			w.health.connected.Store(false)
			delay = min(interval<<min(failures, 3), retryCap)
			if failures == 1 || failures%20 == 0 {
				w.log.Warn("the leader answers but has not confirmed its quorum of masters for too long; retrying", "leader", reply.Leader, "quorum_age_ms", reply.QuorumAgeMS, "attempt", failures)
			}
			w.maybeFence()
			continue
		}
		if failures > 0 {
			w.log.Info("reached the leader again", "leader", reply.Leader, "after_attempts", failures)
		}
		failures, delay = 0, interval
		w.client.SetMasters(reply.Masters)
		w.client.Prefer(reply.Leader)
		w.mu.Lock()
		if contact.After(w.lastContact) {
			w.lastContact = contact
		}
		w.fenced = false
		w.mu.Unlock()
		w.health.connected.Store(true)
		w.quorumDownLogged = false
		if w.health.draining.Swap(reply.Draining) != reply.Draining {
			w.log.Info("drain mark changed by the leader", "draining", reply.Draining)
		}
		w.checkPooled(reply.Gossip)
		if as, ok := w.assignmentsOf(reply); ok {
			w.reconcile(as)
		}
	}
}

// assignmentsOf is what a heartbeat reply assigns: its list, or the one
// this worker holds when the reply says that is unchanged. A reply that
// says unchanged for another digest (not expected) assigns nothing known:
// false, and the next heartbeat asks for the list.
func (w *Worker) assignmentsOf(reply *cluster.HeartbeatReply) ([]cluster.Assignment, bool) {
	if !reply.AssignmentsUnchanged {
		w.assigned, w.assignDigest = reply.Assignments, reply.AssignmentsDigest
		return reply.Assignments, true
	}
	if reply.AssignmentsDigest != "" && reply.AssignmentsDigest == w.assignDigest {
		return w.assigned, true
	}
	w.log.Warn("the leader says the assignments are unchanged but names another digest; asking for them again", "have", w.assignDigest, "leader_digest", reply.AssignmentsDigest)
	w.assigned, w.assignDigest = nil, ""
	return nil, false
}

// checkPooled rejoins the masters' gossip pool when the leader has not seen
// this worker alive there for a second (e.g. after a crash and a restart
// on another port, while the pool still held the old address): the leader
// places executors only on pool members. At most once a second, in the
// background.
func (w *Worker) checkPooled(state string) {
	if state == "alive" {
		w.unpooledSince = time.Time{}
		return
	}
	now := time.Now()
	if w.unpooledSince.IsZero() {
		w.unpooledSince = now
	}
	if now.Sub(w.unpooledSince) < time.Second || now.Sub(w.lastRejoin) < time.Second || w.pool == nil || !w.rejoining.CompareAndSwap(false, true) {
		return
	}
	w.lastRejoin = now
	since := w.unpooledSince
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.rejoining.Store(false)
		err := w.pool.Rejoin()
		if err == nil && time.Since(w.rejoinLogged) < 30*time.Second {
			return
		}
		w.rejoinLogged = time.Now()
		if err != nil {
			w.log.Warn("the leader does not see this worker in the gossip pool, and rejoining it failed; no executors are placed here until it is back", "gossip_state", state, "since", since, "err", err)
			return
		}
		w.log.Info("the leader does not see this worker alive in the gossip pool; rejoined it (repeated every second until it does)", "gossip_state", state, "since", since)
	}()
}

// leaderContact is when a heartbeat sent at sent and answered at now by a
// leader that last confirmed its quorum quorumAgeMS before counts as
// contact, and whether it counts at all: not when that confirmation is
// older than the fencing deadline stopAfter (the leader may already be
// deposed). It is never later than sent + bound: the leader times this
// worker from when the heartbeat reached it, which may be any time after
// sent, and a slow answer (a heartbeat may take until the fencing
// deadline) must not move the fence further past that moment than an
// answer within bound (the heartbeat timeout, which once bounded every
// heartbeat) could.
func leaderContact(sent, now time.Time, quorumAgeMS int64, stopAfter, bound time.Duration) (time.Time, bool) {
	contact := now.Add(-time.Duration(max(quorumAgeMS, 0)) * time.Millisecond)
	if limit := sent.Add(bound); contact.After(limit) {
		contact = limit
	}
	return contact, stopAfter <= 0 || now.Sub(contact) < stopAfter
}

// attemptTimeout bounds one heartbeat (over every master, see
// sendHeartbeat): until the fencing deadline, so that the fence comes on
// time even while masters answer slowly or not at all, and at most a
// failover timeout (a fenced worker, or one that never fences, still
// gives up on a connection that went dead and dials again).
func (w *Worker) attemptTimeout() time.Duration {
	d := w.untilFence()
	if w.opts.FailoverTimeout > 0 {
		d = min(d, w.opts.FailoverTimeout)
	}
	return max(d, 20*time.Millisecond)
}

// kickGap is the least time between a heartbeat and the next one that an
// executor's start, exit or health change asks for: while hundreds start
// at once, their kicks share heartbeats instead of sending one each. A
// kick after a quiet spell is sent at once.
func (w *Worker) kickGap() time.Duration {
	return min(100*time.Millisecond, w.opts.HeartbeatInterval)
}

// sendHeartbeat sends hb to the master the client prefers (the leader as
// last seen), and waits for it as long as ctx allows (up to the fencing
// deadline): a leader that answers slowly, e.g. while the machine starts
// thousands of processes, still answers in time. When it has not
// answered within heartbeatTimeout, or failed, the other masters are
// tried meanwhile, each for heartbeatTimeout and again while the first
// is pending: a frozen or cut-off leader is left for a new one that they
// lead or forward to. The first answer counts.
func (w *Worker) sendHeartbeat(ctx context.Context, hb cluster.Heartbeat, digest, reports string) (*cluster.HeartbeatReply, error) {
	primary := w.client.Preferred()
	var others []string
	for _, m := range w.client.Masters() {
		if m != primary {
			others = append(others, m)
		}
	}
	if primary == "" {
		return w.client.Heartbeat(ctx, hb, digest, reports)
	}
	type result struct {
		reply   *cluster.HeartbeatReply
		err     error
		addr    string
		primary bool
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the attempt that lost
	results := make(chan result, 2)
	go func() {
		r, err := w.client.HeartbeatAt(ctx, primary, hb, digest, reports)
		results <- result{r, err, primary, true}
	}()
	hedge := func() {
		go func() {
			var errs []error
			for _, addr := range others {
				actx, acancel := context.WithTimeout(ctx, w.heartbeatTimeout())
				r, err := w.client.HeartbeatAt(actx, addr, hb, digest, reports)
				acancel()
				if err == nil || answered(err) {
					results <- result{r, err, addr, false}
					return
				}
				errs = append(errs, fmt.Errorf("%s: %w", addr, err))
				if ctx.Err() != nil {
					break
				}
			}
			results <- result{err: errors.Join(errs...)}
		}()
	}
	timer := time.NewTimer(w.heartbeatTimeout())
	defer timer.Stop()
	primaryErr, hedging, hedged := error(nil), false, false
	pending := true // the primary's answer
	for {
		select {
		case <-ctx.Done():
			if primaryErr != nil {
				return nil, primaryErr
			}
			return nil, fmt.Errorf("%s: %w", primary, ctx.Err())
		case <-timer.C:
			if !hedging && len(others) > 0 {
				hedging = true
				hedge()
			}
		case r := <-results:
			if r.err == nil {
				w.client.Prefer(r.addr)
				return r.reply, nil
			}
			if answered(r.err) {
				return nil, r.err
			}
			if r.primary {
				pending, primaryErr = false, fmt.Errorf("%s: %w", primary, r.err)
			} else {
				hedging, hedged = false, true
				if pending {
					// Try them again after a pause while the first waits.
					timer.Reset(max(w.opts.HeartbeatInterval, 100*time.Millisecond))
				}
			}
			if !pending && !hedging {
				if hedged || len(others) == 0 {
					if hedged && r.err != nil && !r.primary {
						return nil, errors.Join(primaryErr, r.err)
					}
					return nil, primaryErr
				}
				hedging = true
				hedge()
			}
		}
	}
}

// answered reports whether err is a master's own answer that another
// master would give too (a refused identity, a bad request), not a sign
// that it cannot serve (502, 503) or cannot be reached.
func answered(err error) bool {
	var apiErr *cluster.APIError
	return errors.As(err, &apiErr) && apiErr.Status != http.StatusServiceUnavailable && apiErr.Status != http.StatusBadGateway
}

// heartbeatTimeout is how long a heartbeat waits for one master before it
// also tries the others: short enough that a frozen or partitioned leader
// is left for a new one well within the fencing deadline.
func (w *Worker) heartbeatTimeout() time.Duration {
	d := 2 * time.Second
	if w.opts.StopAfterDisconnect > 0 {
		d = min(d, w.opts.StopAfterDisconnect/4)
	}
	return max(d, 2*w.opts.HeartbeatInterval)
}

// heartbeat describes this worker and its executors.
func (w *Worker) heartbeat() cluster.Heartbeat {
	hb := cluster.Heartbeat{Worker: cluster.Worker{ID: w.id, Addr: w.addr, CPUs: w.opts.CPUs, BootID: w.boot, Memory: machineMemory()}, Secret: w.secret}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.execs {
		hb.Executors = append(hb.Executors, e.report())
	}
	slices.SortFunc(hb.Executors, func(a, b cluster.ExecutorReport) int { return strings.Compare(a.ID, b.ID) })
	return hb
}

// doorbellLoop keeps one request waiting on the leader's doorbell
// (master/doorbell.go) and sends a heartbeat as soon as it rings: new
// placements reach this worker at once instead of at its next heartbeat.
// Heartbeats stay what they are; the doorbell only makes one come early.
// A master without a doorbell (older) is asked again every minute.
func (w *Worker) doorbellLoop(ctx context.Context) {
	var epoch string
	var seen uint64
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 25*time.Second) // the leader answers within 20 s
		bell, err := w.client.WaitAssignments(wctx, w.id, epoch, seen)
		cancel()
		var pause time.Duration
		var apiErr *cluster.APIError
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusMethodNotAllowed):
			pause = time.Minute // a master older than the doorbell
		case err != nil:
			pause = max(w.opts.HeartbeatInterval, time.Second)
		default:
			if bell.Epoch == epoch && bell.Rings != seen {
				w.kickHeartbeat()
			}
			epoch, seen = bell.Epoch, bell.Rings
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}
}

func (w *Worker) kickHeartbeat() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Draining reports whether the leader's last heartbeat reply marked this
// worker draining (gear workers drain); its /ecv takes it out of rotation.
func (w *Worker) Draining() bool { return w.health.draining.Load() }

// machineMemory is the memory executors may share here: the machine's
// MemTotal, or the worker's own memory cgroup limit if lower (v1 or v2);
// 0 when unknown (placement then does not count memory here).
func machineMemory() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				total = kb << 10
			}
		}
	}
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[1] == "" && parts[0] == "0":
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.max")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")
		default:
			continue
		}
		lb, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if lim, err := strconv.ParseInt(strings.TrimSpace(string(lb)), 10, 64); err == nil && lim > 0 && (total == 0 || lim < total) {
			total = lim
		}
	}
	return total
}
