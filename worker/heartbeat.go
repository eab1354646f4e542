// Heartbeats: the worker's one contact with the leader. Each carries the
// state of every executor; the reply lists what to run, how the leader sees
// this worker in the gossip pool, and how fresh the leader's quorum is.

package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	failures := 0
	w.mu.Lock()
	w.lastContact = time.Now()
	w.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		case <-w.kick:
		}
		// An attempt never runs past the fencing deadline, so that the
		// fence comes on time even while masters answer slowly or not at
		// all.
		hctx, cancel := context.WithTimeout(ctx, min(w.heartbeatTimeout(), max(w.untilFence(), 20*time.Millisecond)))
		sent := time.Now()
		digest := w.assignDigest
		if digest == "" {
			digest = "-" // none yet: ask for the digest with the assignments
		}
		// Reports the leader acknowledged are left out while they stay
		// the same (cluster.ReportsDigestHeader).
		hb := w.heartbeat()
		reports := reportsDigest(hb.Executors)
		reportsHeader := reports
		if reports == w.reportsAcked {
			hb.Executors, reportsHeader = nil, "same:"+reports
		}
		reply, err := w.client.Heartbeat(hctx, hb, digest, reportsHeader)
		if err == nil {
			if reply.ReportsDigest == reports {
				w.reportsAcked = reports
			} else if w.reportsAcked != "" {
				// Not held by this leader (a new one): list them at once.
				w.reportsAcked = ""
				w.kickHeartbeat()
			}
		}
		cancel()
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
		contact, ok := leaderContact(time.Now(), reply.QuorumAgeMS, w.opts.StopAfterDisconnect)
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

// leaderContact is when a heartbeat answered at now by a leader that last
// confirmed its quorum quorumAgeMS before counts as contact, and whether
// it counts at all: not when that confirmation is older than the fencing
// deadline stopAfter (the leader may already be deposed).
func leaderContact(now time.Time, quorumAgeMS int64, stopAfter time.Duration) (time.Time, bool) {
	contact := now.Add(-time.Duration(max(quorumAgeMS, 0)) * time.Millisecond)
	return contact, stopAfter <= 0 || now.Sub(contact) < stopAfter
}

// heartbeatTimeout bounds one heartbeat: short enough that a frozen or
// partitioned master is given up on well within the fencing deadline.
func (w *Worker) heartbeatTimeout() time.Duration {
	d := 2 * time.Second
	if w.opts.StopAfterDisconnect > 0 {
		d = min(d, w.opts.StopAfterDisconnect/4)
	}
	return max(d, 2*w.opts.HeartbeatInterval)
}

// reportsDigest identifies a heartbeat's executor reports.
func reportsDigest(reports []cluster.ExecutorReport) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(reports)
	return hex.EncodeToString(h.Sum(nil)[:16])
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
