package channel

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/test/redistest"
)

// testLogger shows channel logs with -v only.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func newTestChannel(t *testing.T, addr string, tune func(*Options)) *Channel {
	t.Helper()
	o := Options{Addr: addr, Prefix: "t:", Logger: testLogger(t)}
	if tune != nil {
		tune(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	return redistest.Start(t)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", d, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitReady(t *testing.T, srvs ...*Server) {
	t.Helper()
	for _, s := range srvs {
		select {
		case <-s.Ready():
		case <-s.Done():
			t.Fatalf("server %s stopped before ready: %v", s.ID(), s.Err())
		case <-time.After(15 * time.Second):
			t.Fatalf("server %s not ready after 15s", s.ID())
		}
	}
}

// recorder counts deliveries per server and push id.
type recorder struct {
	mu      sync.Mutex
	count   map[string]map[string]int // server -> push id -> count
	members map[string]map[string][]string
	data    map[string]map[string]string
	redeliv int
	total   int
}

func newRecorder() *recorder {
	return &recorder{count: map[string]map[string]int{}, members: map[string]map[string][]string{}, data: map[string]map[string]string{}}
}

func (r *recorder) handler(server string) func(Delivery) {
	return func(d Delivery) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.count[server] == nil {
			r.count[server] = map[string]int{}
			r.members[server] = map[string][]string{}
			r.data[server] = map[string]string{}
		}
		r.count[server][d.PushID]++
		r.members[server][d.PushID] = slices.Sorted(slices.Values(d.Members))
		r.data[server][d.PushID] = string(d.Data)
		r.total++
		if d.Redelivered {
			r.redeliv++
		}
	}
}

func (r *recorder) got(server, push string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[server][push]
}

func (r *recorder) snapshot() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d deliveries over %d servers", r.total, len(r.count))
}

func serve(t *testing.T, c *Channel, id string, h func(Delivery), opts ...ServeOption) *Server {
	t.Helper()
	s := c.Serve(context.Background(), id, h, opts...)
	t.Cleanup(func() { _ = s.Close() })
	return s
}
