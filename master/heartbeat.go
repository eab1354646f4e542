package master

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// handleHeartbeat checks the worker's secret, records the worker as alive,
// folds the state changes it reports into the replicated state, and
// answers with its assignments. A heartbeat under a registered id with
// another secret changes nothing and gets nothing back.
func (m *Master) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb cluster.Heartbeat
	if err := decodeBody(r, &hb); err != nil {
		writeError(w, err)
		return
	}
	if hb.Worker.ID == "" || hb.Worker.Addr == "" {
		writeError(w, fmt.Errorf("%w: heartbeat without worker id or address", ErrBadRequest))
		return
	}
	if hb.Secret == "" {
		writeError(w, fmt.Errorf("%w: heartbeat of worker %s without a worker secret: the worker is older than this master; upgrade it", ErrBadRequest, hb.Worker.ID))
		return
	}
	// The worker may leave out reports the leader acknowledged before, or
	// send only those that changed since (cluster.ReportsDigestHeader,
	// Heartbeat.ReportsBase): they are taken from the cached ones. A
	// leader without them (a new one) reads no reports from this
	// heartbeat and acknowledges none, so the worker lists them in its
	// next.
	reportsDigest, held, err := m.reportCache.resolve(&hb, r.Header.Get(cluster.ReportsDigestHeader))
	if err != nil {
		writeError(w, err)
		return
	}
	omitted := !held
	hash := secretHash(hb.Secret)
	now := time.Now()
	var known *cluster.Worker
	var refused error
	hasSecret := false // workers registered before secrets existed have none
	var reports []cluster.ExecutorReport
	var gone []string
	m.fsm.readWorker(hb.Worker.ID, func(s *State, refs []execRef) {
		if refused = s.checkSecret(hb.Worker.ID, hash); refused != nil {
			return
		}
		hasSecret = s.WorkerSecrets[hb.Worker.ID] != ""
		if w, ok := s.Workers[hb.Worker.ID]; ok {
			c := *w
			known = &c
		}
		if !omitted {
			reports, gone = reportChangesOf(refs, hb.Worker.ID, hb.Executors)
		}
	})
	if refused != nil {
		m.refuseHeartbeat(w, r, hb.Worker.ID, refused)
		return
	}
	if known == nil || !hasSecret || known.Addr != hb.Worker.Addr || known.BootID != hb.Worker.BootID || !slices.Equal(known.CPUs, hb.Worker.CPUs) ||
		known.Memory != hb.Worker.Memory {
		wk := hb.Worker
		wk.Gossip = ""
		if _, err := m.apply(command{Op: opWorker, Worker: &wk, SecretHash: hash}); err != nil {
			if errors.Is(err, ErrForbidden) {
				m.refuseHeartbeat(w, r, hb.Worker.ID, err)
				return
			}
			writeError(w, err)
			return
		}
		if known == nil {
			m.log.Info("worker registered; executors are placed on it once it is also in the gossip pool", "worker", wk.ID, "addr", wk.Addr, "cpus", wk.CPUs)
		}
	}
	m.seen(hb.Worker.ID, now)
	if (len(reports) > 0 || len(gone) > 0) && m.statusFlight.begin(hb.Worker.ID) {
		// Replicated behind the answer: the heartbeat is the contact
		// the worker's fence clock counts, and waiting for a commit
		// made that clock depend on how busy the log is. Under load
		// (10 000 executors starting on 2 vCPUs) commits took longer
		// than the worker's heartbeat timeout, workers fenced and
		// stopped every executor while the leader still saw them
		// alive, and started them all again: a storm. Nothing is lost
		// when the entry fails: the next heartbeat compares the
		// worker's reports with the state again and sends what is
		// still missing.
		go func(id string) {
			defer m.statusFlight.end(id)
			if err := m.applyStatus(id, reports, gone); err != nil {
				m.log.Debug("executor reports not replicated; the worker's next heartbeat brings them again", "worker", id, "err", err)
			}
		}(hb.Worker.ID)
	}
	// Else this worker's previous reports are still being replicated: the
	// heartbeat is answered without queueing more behind them (they are
	// compared with the state again at its next heartbeat). At 10 000
	// executors, heartbeats that timed out and came again queued
	// hundreds of status entries, each with a worker's every report, and
	// the leader fell further behind the longer it ran.
	reply := m.assignments(hb.Worker.ID, r.Header.Get(cluster.AssignmentsDigestHeader))
	if reportsDigest != "" && !omitted {
		m.reportCache.put(hb.Worker.ID, reportsDigest, hb.Executors)
		reply.ReportsDigest = reportsDigest
	}
	reply.ReportsDelta = true
	reply.Gossip = m.gossipStateOf(&hb.Worker)
	reply.QuorumAgeMS = m.quorumAge().Milliseconds()
	writeCompactJSON(w, reply)
}

// refuseHeartbeat answers a heartbeat whose secret does not match with 403,
// logging it at most once a minute per worker id (anyone with the token
// could otherwise fill the log).
func (m *Master) refuseHeartbeat(w http.ResponseWriter, r *http.Request, id string, err error) {
	now := time.Now()
	m.mu.Lock()
	last := m.refusedLogged[id]
	logIt := now.Sub(last) >= time.Minute
	if logIt {
		m.refusedLogged[id] = now
	}
	m.mu.Unlock()
	if logIt {
		m.log.Warn("refused a heartbeat under a registered worker id with another secret", "worker", id, "from", r.RemoteAddr, "err", err)
	}
	writeError(w, err)
}

// secretHash is what the replicated state keeps of a worker secret. The
// secret is 256 random bits, so a plain SHA-256 is enough.
func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// reportChanges is what a heartbeat of worker id changes in st: the
// reports of its executors that differ from the replicated ones, and the
// executors of killed apps placed on it that it no longer runs. Reports of
// executors not placed on it (nor their replacements) are stale and left
// out. It reads st only.
func reportChanges(st *State, id string, executors []cluster.ExecutorReport) (reports []cluster.ExecutorReport, gone []string) {
	return reportChangesOf(workerRefs(st, id), id, executors)
}

// reportChangesOf is reportChanges from refs, the executors of worker id
// (workerRefs, or the fsm's index of them).
func reportChangesOf(refs []execRef, id string, executors []cluster.ExecutorReport) (reports []cluster.ExecutorReport, gone []string) {
	reported := make(map[string]cluster.ExecutorReport, len(executors))
	for _, rep := range executors {
		reported[rep.ID] = rep
	}
	for _, ref := range refs {
		app := ref.app
		e := app.Executors[ref.i]
		if e.Worker != id && e.Replacement != nil && e.Replacement.Worker == id {
			// Its replacement, started here while e's worker drains.
			if rep, ok := reported[e.ID]; ok && changed(*e.Replacement, rep) {
				reports = append(reports, rep)
			}
			continue
		}
		if e.Worker != id {
			continue
		}
		rep, ok := reported[e.ID]
		if !ok {
			if app.State == cluster.AppKilled {
				gone = append(gone, e.ID)
			}
			continue
		}
		if changed(e, rep) {
			reports = append(reports, rep)
		}
	}
	return reports, gone
}

// changed reports whether a worker's report differs from the replicated
// executor in anything worth a log entry.
func changed(e cluster.Executor, r cluster.ExecutorReport) bool {
	return e.PID != r.PID || e.State != r.State || e.Restarts != r.Restarts || e.Crashes != r.Crashes || e.LastExit != r.LastExit ||
		e.LastError != r.LastError || e.Observed != r.Generation || !e.StartedAt.Equal(r.StartedAt) || e.Health != r.Health ||
		(len(r.CPUs) > 0 && !slices.Equal(e.CPUs, r.CPUs))
}

// reportCache holds each worker's last acknowledged executor reports by
// digest (cluster.ReportsDigestHeader), on the leader: the newest and the
// one before it, so that a worker whose heartbeat was applied but whose
// answer it never got (a timeout under load) can still send its next
// delta against the digest it last saw acknowledged.
type reportCache struct {
	mu sync.Mutex
	m  map[string][2]cachedReports // [0] newest
}

type cachedReports struct {
	digest  string
	reports []cluster.ExecutorReport // sorted by id; never changed once put
}

func (c *reportCache) get(worker, digest string) ([]cluster.ExecutorReport, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.m[worker] {
		if r.digest != "" && r.digest == digest {
			return r.reports, true
		}
	}
	return nil, false
}

func (c *reportCache) put(worker, digest string, reports []cluster.ExecutorReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][2]cachedReports{}
	}
	held := c.m[worker]
	switch digest {
	case held[0].digest:
		return
	case held[1].digest:
		held[0], held[1] = held[1], held[0]
	default:
		held[0], held[1] = cachedReports{digest, reports}, held[0]
	}
	c.m[worker] = held
}

// resolve turns the executor reports of heartbeat hb, whose
// ReportsDigestHeader is header, into the worker's whole list: the
// cached list for "same:<digest>", the cached list of hb.ReportsBase with
// the delta applied, or hb's own list. It returns the digest of that list
// ("" when the worker sent none) and whether it is known: false when the
// worker left out reports this leader does not hold (hb.Executors is then
// nil and must not be read as the worker's list).
func (c *reportCache) resolve(hb *cluster.Heartbeat, header string) (digest string, known bool, err error) {
	if d, ok := strings.CutPrefix(header, "same:"); ok {
		cached, ok := c.get(hb.Worker.ID, d)
		hb.Executors = cached
		return d, ok, nil
	}
	if hb.ReportsBase == "" {
		return header, true, nil
	}
	if header == "" {
		return "", false, fmt.Errorf("%w: heartbeat of worker %s lists its executor reports as changes since %q but names no digest for the result (header %s): send the digest of the whole list",
			ErrBadRequest, hb.Worker.ID, hb.ReportsBase, cluster.ReportsDigestHeader)
	}
	base, ok := c.get(hb.Worker.ID, hb.ReportsBase)
	if !ok {
		hb.Executors = nil
		return header, false, nil
	}
	hb.Executors = applyReportsDelta(base, hb.Executors, hb.Removed)
	return header, true, nil
}

// applyReportsDelta is base (sorted by id, not changed) with the reports
// of removed taken out and changed put in, sorted by id.
func applyReportsDelta(base, changed []cluster.ExecutorReport, removed []string) []cluster.ExecutorReport {
	drop := make(map[string]bool, len(changed)+len(removed))
	for _, id := range removed {
		drop[id] = true
	}
	for _, r := range changed {
		drop[r.ID] = true
	}
	out := make([]cluster.ExecutorReport, 0, len(base)+len(changed))
	for _, r := range base {
		if !drop[r.ID] {
			out = append(out, r)
		}
	}
	seen := make(map[string]int, len(changed))
	for _, r := range changed {
		if i, dup := seen[r.ID]; dup {
			out[i] = r // the last report of an id counts
			continue
		}
		seen[r.ID] = len(out)
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b cluster.ExecutorReport) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// inFlight is a set of worker ids with a status entry being replicated.
type inFlight struct {
	mu  sync.Mutex
	ids map[string]bool
}

// begin marks id in flight; false when it already is.
func (f *inFlight) begin(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids[id] {
		return false
	}
	if f.ids == nil {
		f.ids = map[string]bool{}
	}
	f.ids[id] = true
	return true
}

func (f *inFlight) end(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ids, id)
}
