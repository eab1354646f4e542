package master

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// The doorbell tells a worker at once that its assignments changed, so it
// need not wait for its next heartbeat (up to gear.worker.heartbeat-
// interval) to learn of new placements. A worker keeps one request waiting
// on GET /api/v1/workers/{id}/assignments/wait; the leader answers it when
// it commits placements on that worker (or after doorbellHold), and the
// worker then sends a heartbeat, which brings the assignments as always.
// The answer carries nothing else: a missed or late ring only costs the
// wait for the regular heartbeat.

// doorbellHold is how long a waiting request is held without a ring;
// below the workers' 30 s response header timeout.
const doorbellHold = 20 * time.Second

type doorbells struct {
	mu      sync.Mutex
	rings   map[string]uint64   // worker id -> rings so far
	waiting map[string]*waiters // worker id -> the requests waiting for its next ring
	closed  chan struct{}       // closed at shutdown: answer every waiter
	once    sync.Once
}

// waiters are the requests waiting for one worker's next ring: ring
// closes ch; the last of them to give up without a ring removes the entry,
// so requests for ids that are never rung leave nothing behind.
type waiters struct {
	ch chan struct{}
	n  int
}

func newDoorbells() *doorbells {
	return &doorbells{rings: map[string]uint64{}, waiting: map[string]*waiters{}, closed: make(chan struct{})}
}

// ring tells the waiting requests of the given workers that their
// assignments changed. A nil d (masters built by tests) rings nobody.
func (d *doorbells) ring(workers ...string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range workers {
		d.rings[id]++
		if ws, ok := d.waiting[id]; ok {
			close(ws.ch)
			delete(d.waiting, id)
		}
	}
}

// wait returns the ring count of worker id once it differs from seen, or
// after hold, or when done or the doorbells close.
func (d *doorbells) wait(id string, seen uint64, hold time.Duration, done <-chan struct{}) uint64 {
	d.mu.Lock()
	if n := d.rings[id]; n != seen {
		d.mu.Unlock()
		return n
	}
	ws, ok := d.waiting[id]
	if !ok {
		ws = &waiters{ch: make(chan struct{})}
		d.waiting[id] = ws
	}
	ws.n++
	d.mu.Unlock()
	t := time.NewTimer(hold)
	defer t.Stop()
	select {
	case <-ws.ch:
	case <-t.C:
	case <-done:
	case <-d.closed:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ws.n--; ws.n == 0 && d.waiting[id] == ws {
		delete(d.waiting, id) // not rung: the last waiter clears it
	}
	return d.rings[id]
}

// pending is how many workers have requests waiting (for tests).
func (d *doorbells) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.waiting)
}

func (d *doorbells) count(id string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rings[id]
}

func (d *doorbells) close() { d.once.Do(func() { close(d.closed) }) }

// handleDoorbell answers a worker's waiting request: at once when this
// master is not the leader (503: the worker asks the others) or when the
// ring count differs from the worker's (?seen=, of this master: ?epoch=),
// else when its assignments change or after doorbellHold.
func (m *Master) handleDoorbell(w http.ResponseWriter, r *http.Request) {
	if !m.isLeader() {
		writeError(w, fmt.Errorf("%w: this master is not the leader", ErrNoLeader))
		return
	}
	id := r.PathValue("id")
	var seen uint64
	if v := r.URL.Query().Get("seen"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, fmt.Errorf("%w: seen=%q is not a ring count (a number >= 0)", ErrBadRequest, v))
			return
		}
		seen = n
	}
	if r.URL.Query().Get("epoch") != m.boot {
		// The count of another master (or none yet): answer with ours.
		writeCompactJSON(w, cluster.Doorbell{Epoch: m.boot, Rings: m.bells.count(id)})
		return
	}
	n := m.bells.wait(id, seen, doorbellHold, r.Context().Done())
	writeCompactJSON(w, cluster.Doorbell{Epoch: m.boot, Rings: n})
}
