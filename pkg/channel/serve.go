package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Delivery is one push as received by one server.
type Delivery struct {
	Channel string
	PushID  string
	// Members are this server's members of Channel when the push was
	// made: forward Data to each of them.
	Members []string
	Data    []byte
	// Redelivered is set when the entry was read from the pending list
	// (delivered by Redis before but not acknowledged): a previous Serve
	// of this server id may have handled it and died before acknowledging
	// it, or a connection failure lost it on the way.
	Redelivered bool
	// EntryID is the Redis stream entry id in the server's inbox.
	EntryID string
}

// ServeOption tunes Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	onLeaseLost func(ctx context.Context)
	dedupe      int
}

// OnLeaseLost sets a callback that runs (in the heartbeat goroutine) when the
// server's lease is found missing after it had been held: Redis lost its data
// (restart without persistence) or the server was cut off for longer than
// MemberTTL and swept. The server's members are gone then; add them again.
// Keep it short: heartbeats wait for it.
func OnLeaseLost(f func(ctx context.Context)) ServeOption {
	return func(c *serveConfig) { c.onLeaseLost = f }
}

// DedupeWindow sets how many recent push ids a Serve remembers to drop
// duplicates (default 4096).
func DedupeWindow(n int) ServeOption {
	return func(c *serveConfig) {
		if n > 0 {
			c.dedupe = n
		}
	}
}

// Server is a running Serve: it heartbeats the server's lease, receives the
// server's deliveries and (one server at a time) sweeps dead servers. It
// stops when the context given to Serve ends or Close is called.
type Server struct {
	ch      *Channel
	id      string
	handler func(Delivery)
	cfg     serveConfig

	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	err    error

	readyMu  sync.Mutex
	hbOK     bool
	recvOK   bool
	ready    chan struct{}
	readyHit bool

	healthMu sync.Mutex
	failing  map[string]bool
}

// blockFor is how long one XREADGROUP waits for new entries; it bounds how
// long Close waits for the receive loop.
const blockFor = 500 * time.Millisecond

// Serve starts serving server id serverID (empty: Options.ServerID): handler
// is called, one delivery at a time, for every push that reaches the server.
// Serve does not fail when Redis is down: it logs, retries with backoff and
// resumes. It fails only for an invalid server id or a nil handler; the
// returned Server is then already done and Err and Close return the error.
func (c *Channel) Serve(ctx context.Context, serverID string, handler func(Delivery), opts ...ServeOption) *Server {
	s := &Server{ch: c, handler: handler, done: make(chan struct{}), ready: make(chan struct{}), failing: map[string]bool{}}
	s.cfg.dedupe = 4096
	for _, o := range opts {
		o(&s.cfg)
	}
	id, err := c.server(serverID)
	s.id = id
	if err == nil && handler == nil {
		err = invalid("Serve needs a handler")
	}
	if err != nil {
		s.err = err
		s.cancel = func() {}
		close(s.done)
		return s
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.heartbeatLoop(ctx) }()
	go func() { defer s.wg.Done(); s.receiveLoop(ctx) }()
	go func() { defer s.wg.Done(); s.sweepLoop(ctx) }()
	go func() { s.wg.Wait(); close(s.done) }() // owned: ends when the three loops end
	return s
}

// ID is the server id being served.
func (s *Server) ID() string { return s.id }

// Ready is closed once the lease is held and the inbox consumer group exists
// (the first time only).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the reason Serve could not start, or nil.
func (s *Server) Err() error { return s.err }

// Close stops the server and waits for its goroutines. The lease is left to
// expire (so a quick restart keeps the members); use Channel.DropServer to
// remove the server at once.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	return s.err
}

func (s *Server) markReady(hb, recv bool) {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	s.hbOK = s.hbOK || hb
	s.recvOK = s.recvOK || recv
	if s.hbOK && s.recvOK && !s.readyHit {
		s.readyHit = true
		close(s.ready)
	}
}

// health logs state changes only, not every failed retry.
func (s *Server) health(loop string, err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	switch {
	case err != nil && !s.failing[loop]:
		s.failing[loop] = true
		s.ch.log.Warn("channel: redis failing; retrying", "server", s.id, "loop", loop, "err", err)
	case err == nil && s.failing[loop]:
		s.failing[loop] = false
		s.ch.log.Info("channel: redis reachable again", "server", s.id, "loop", loop)
	}
}

type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 50 * time.Millisecond
	} else if b.d < 2*time.Second {
		b.d *= 2
	}
	return b.d/2 + rand.N(b.d/2+1)
}

func (b *backoff) reset() { b.d = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Server) heartbeatLoop(ctx context.Context) {
	host, _ := os.Hostname()
	token := fmt.Sprintf("pid %d on %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	every := s.ch.opts.MemberTTL / 3
	held := false
	var bo backoff
	for {
		existed, err := s.ch.lease(ctx, s.id, token)
		wait := every
		if ctx.Err() != nil {
			return
		}
		s.health("heartbeat", err)
		if err != nil {
			wait = min(bo.next(), every)
		} else {
			bo.reset()
			if held && !existed {
				s.ch.log.Warn("channel: server lease was lost (Redis restarted or server was swept); its members are gone", "server", s.id)
				if s.cfg.onLeaseLost != nil {
					s.cfg.onLeaseLost(ctx)
				}
			}
			held = true
			s.markReady(true, false)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

func (s *Server) receiveLoop(ctx context.Context) {
	c := s.ch
	inbox := c.inboxKey(s.id)
	seen := newRecent(s.cfg.dedupe)
	pending := true // start with entries a previous Serve did not acknowledge
	var bo backoff
	fail := func(err error) bool {
		s.health("receive", err)
		pending = true
		return sleep(ctx, bo.next())
	}
	for ctx.Err() == nil {
		start, block := ">", blockFor
		if pending {
			start, block = "0", -1
		}
		res, err := c.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: consumerGroup, Consumer: s.id, Streams: []string{inbox, start}, Count: 128, Block: block,
		}).Result()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, redis.Nil) { // block timed out
			s.health("receive", nil)
			s.markReady(false, true)
			bo.reset()
			continue
		}
		if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
			// First start, or Redis lost the stream: create the group
			// from the start of the stream, to get pushes queued
			// before this server started.
			err = c.client.XGroupCreateMkStream(ctx, inbox, consumerGroup, "0").Err()
			if err == nil || strings.HasPrefix(err.Error(), "BUSYGROUP") {
				continue
			}
		}
		if err != nil {
			if !fail(c.wrap(fmt.Sprintf("receive deliveries of server %q", s.id), err)) {
				return
			}
			continue
		}
		s.health("receive", nil)
		s.markReady(false, true)
		bo.reset()
		var ids []string
		for _, st := range res {
			for _, m := range st.Messages {
				ids = append(ids, m.ID)
				d, perr := parseEntry(m)
				if perr != nil {
					c.log.Error("channel: dropping malformed inbox entry", "server", s.id, "entry", m.ID, "err", perr)
					continue
				}
				if !seen.add(d.PushID) {
					continue // handled already in this Serve
				}
				d.Redelivered = pending
				s.handler(d)
			}
		}
		if len(ids) == 0 {
			pending = false
			continue
		}
		// Acknowledge even when Close came during the handler: what was
		// handled must not be redelivered to the next Serve.
		ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		pipe := c.client.Pipeline()
		pipe.XAck(ackCtx, inbox, consumerGroup, ids...)
		pipe.XDel(ackCtx, inbox, ids...)
		_, err = pipe.Exec(ackCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Re-read the pending list: the dedupe window drops what
			// the handler has already seen.
			if !fail(c.wrap(fmt.Sprintf("acknowledge deliveries of server %q", s.id), err)) {
				return
			}
		}
	}
}

func (s *Server) sweepLoop(ctx context.Context) {
	every := s.ch.opts.SweepInterval
	for {
		// Jitter spreads the servers' attempts; the lock lets one win.
		if !sleep(ctx, every/2+rand.N(every/2+1)) {
			return
		}
		ok, err := s.ch.trySweepLock(ctx, s.id, every)
		if err != nil || !ok {
			continue // the heartbeat loop reports Redis trouble
		}
		if _, err := s.ch.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.ch.log.Warn("channel: sweep failed", "server", s.id, "err", err)
		}
	}
}

func parseEntry(m redis.XMessage) (Delivery, error) {
	str := func(k string) (string, error) {
		v, ok := m.Values[k].(string)
		if !ok {
			return "", fmt.Errorf("field %q missing", k)
		}
		return v, nil
	}
	d := Delivery{EntryID: m.ID}
	var err error
	if d.PushID, err = str("id"); err != nil {
		return d, err
	}
	if d.Channel, err = str("channel"); err != nil {
		return d, err
	}
	data, err := str("data")
	if err != nil {
		return d, err
	}
	d.Data = []byte(data)
	members, err := str("members")
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(members), &d.Members); err != nil {
		return d, fmt.Errorf("field members: %w", err)
	}
	return d, nil
}

// recent is a bounded set of push ids (FIFO eviction).
type recent struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newRecent(n int) *recent {
	return &recent{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add reports whether id was new.
func (r *recent) add(id string) bool {
	if _, ok := r.set[id]; ok {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	r.set[id] = struct{}{}
	return true
}
