package master

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/gear-run/gear/pkg/cluster"
)

// Lists that grow with the cluster (placements, lost executors, status
// reports) are replicated in batches, each one raft entry of at most
// MaxEntrySize. Each batch is a complete command on its own: a leader that
// fails between two batches leaves the state consistent, and the next
// reconcile round (or heartbeat) sends what is still missing.

// applyAssign replicates placements in batches.
func (m *Master) applyAssign(as []assignment) error {
	batches, err := splitBySize(as, batchBudget)
	if err != nil {
		return fmt.Errorf("placements: %w", err)
	}
	for _, b := range batches {
		if _, err := m.apply(command{Op: opAssign, Assign: b}); err != nil {
			return err
		}
		// Applied here: the workers' next heartbeats see the placements.
		var workers []string
		for _, a := range b {
			if !slices.Contains(workers, a.Worker) {
				workers = append(workers, a.Worker)
			}
		}
		m.bells.ring(workers...)
	}
	return nil
}

// applyUnassign replicates lost executors in batches.
func (m *Master) applyUnassign(lost []string) error {
	batches, err := splitBySize(lost, batchBudget)
	if err != nil {
		return fmt.Errorf("lost executors: %w", err)
	}
	for _, b := range batches {
		if _, err := m.apply(command{Op: opUnassign, Lost: b}); err != nil {
			return err
		}
	}
	return nil
}

// maxReportSize bounds one executor report: its log tail is cut to fit, so
// a worker that reports huge log lines still gets its states through.
const maxReportSize = 16 << 10

// applyStatus replicates a worker's changed executor reports and the
// executors it no longer runs, in batches.
func (m *Master) applyStatus(workerID string, reports []cluster.ExecutorReport, gone []string) error {
	for i := range reports {
		reports[i] = trimReport(reports[i], maxReportSize)
	}
	rb, err := splitBySize(reports, batchBudget)
	if err != nil {
		return fmt.Errorf("executor reports of worker %s: %w", shorten(workerID), err)
	}
	gb, err := splitBySize(gone, batchBudget)
	if err != nil {
		return fmt.Errorf("stopped executors of worker %s: %w", shorten(workerID), err)
	}
	// apply reads only the worker's id: the rest of what the worker sent
	// stays out of the log.
	wk := cluster.Worker{ID: workerID}
	for _, b := range rb {
		if _, err := m.apply(command{Op: opStatus, Worker: &wk, Reports: b}); err != nil {
			return err
		}
	}
	for _, b := range gb {
		if _, err := m.apply(command{Op: opStatus, Worker: &wk, Gone: b}); err != nil {
			return err
		}
	}
	return nil
}

// trimReport cuts a report's log tail (oldest lines first) and then its
// error texts until its encoding is at most limit bytes.
func trimReport(r cluster.ExecutorReport, limit int) cluster.ExecutorReport {
	size := func() int {
		b, _ := json.Marshal(r)
		return len(b)
	}
	if size() <= limit {
		return r
	}
	tail := r.LogTail
	for len(tail) > 0 {
		tail = tail[len(tail)/2+len(tail)%2:] // halve: few encodings for a long tail
		r.LogTail = tail
		if size() <= limit {
			return r
		}
	}
	r.LogTail = nil
	const keep = 1024
	if len(r.LastError) > keep {
		r.LastError = r.LastError[:keep] + "...(cut)"
	}
	if len(r.LastExit) > keep {
		r.LastExit = r.LastExit[:keep] + "...(cut)"
	}
	return r
}
