// Executor reports in heartbeats: all of them, only those that changed
// since the leader acknowledged a list, or none while nothing changed.

package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/gear-run/gear/pkg/cluster"
)

// reportSync tracks which executor reports the leader holds, so that a
// heartbeat carries only what changed since (heartbeat goroutine only).
// While 1000 executors start, every start changes one report; a heartbeat
// that listed all of them each time (encoded by a busy worker, decoded by
// a busy leader) was what made heartbeats slow enough to time out.
type reportSync struct {
	acked string            // digest of the list the leader acknowledged; "" none
	held  map[string]string // that list: executor id -> its JSON
	delta bool              // the acknowledging leader takes deltas
}

// reportsOut is what one heartbeat sends of the worker's reports.
type reportsOut struct {
	digest string            // of the whole list
	header string            // cluster.ReportsDigestHeader
	enc    map[string]string // the whole list: id -> JSON
	// executors and base, removed: the heartbeat's Executors,
	// ReportsBase and Removed.
	executors []cluster.ExecutorReport
	base      string
	removed   []string
}

// prepare is what a heartbeat sends for reports (sorted by id, the whole
// list): nothing when the leader holds them ("same:<digest>"), the
// changes since the list it acknowledged when it takes deltas, else all.
func (s *reportSync) prepare(reports []cluster.ExecutorReport) reportsOut {
	h := sha256.New()
	enc := make(map[string]string, len(reports))
	for _, r := range reports {
		b, _ := json.Marshal(r) // plain data: cannot fail
		enc[r.ID] = string(b)
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	out := reportsOut{digest: hex.EncodeToString(h.Sum(nil)[:16]), enc: enc}
	out.header = out.digest
	switch {
	case s.acked != "" && out.digest == s.acked:
		out.header = "same:" + out.digest
	case s.acked != "" && s.delta:
		out.base = s.acked
		for _, r := range reports {
			if s.held[r.ID] != enc[r.ID] {
				out.executors = append(out.executors, r)
			}
		}
		for id := range s.held {
			if _, ok := enc[id]; !ok {
				out.removed = append(out.removed, id)
			}
		}
		slices.Sort(out.removed)
	default:
		out.executors = reports
	}
	return out
}

// answered takes the leader's reply to a heartbeat that sent out. It
// returns true when the leader does not hold the reports the worker
// assumed it held (a new leader): the next heartbeat, best sent at once,
// lists them all.
func (s *reportSync) answered(out reportsOut, reply *cluster.HeartbeatReply) (resend bool) {
	if reply.ReportsDigest == out.digest {
		s.acked, s.held, s.delta = out.digest, out.enc, reply.ReportsDelta
		return false
	}
	resend = s.acked != ""
	s.forget()
	return resend
}

// forget makes the next heartbeat list every report.
func (s *reportSync) forget() { s.acked, s.held, s.delta = "", nil, false }

// deltaRefused reports whether a heartbeat that sent out failed because a
// master refused its delta: an older master decodes heartbeats strictly
// and answers 400 to fields it does not know (cluster.Heartbeat.ReportsBase).
// The worker then sends the whole list at once.
func deltaRefused(out reportsOut, err error) bool {
	var apiErr *cluster.APIError
	return err != nil && out.base != "" && errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest
}
