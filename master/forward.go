package master

// Forwarding: a follower hands every leader-only request to the leader
// (lead, api.go). Here: the connections it does that on.
//
// They are kept alive and pooled, so a forwarded read costs no TCP (or TLS)
// handshake. What a pool must not cost is the quick failure on a lost
// leader machine, which answers nothing and refuses nothing (the reason
// forwarding used a fresh connection per request before):
//   - every pooled connection goes when the leader changes (follow, called
//     from raft's leader observations and before every request), and a
//     request still waiting for its answer from a leader that is no longer
//     the leader is cut at once: nothing new goes out on, and nothing waits
//     on, a connection to a deposed or lost leader;
//   - the sockets carry TCP_USER_TIMEOUT (data the leader's machine does not
//     acknowledge for forwardAckTimeout, or the failover timeout for a large
//     body, see poolFor, fails the connection, rather than
//     minutes of retransmissions) and keepalive probes every second (an
//     idle or waiting connection to a silent machine dies the same way),
//     for a leader this follower cannot reach while its raft still hears it
//     (a one-way cut: no leader change cuts anything there). A live
//     machine's kernel acknowledges within milliseconds whatever its gear
//     process is doing, paused, busy or slow to read, so this judges the
//     machine and the path, as the dial's 500 ms does, not the process;
//   - a dial still gives up after 500 ms.
//
// Retries. net/http itself resends a request on another connection when a
// reused one fails before it got any byte of the answer, and only when
// that is safe: a GET without a body, or a request without a body of
// which nothing was written yet. On top of that, a GET without a body that failed on a reused
// connection, or that was cut by a leader change, is sent once more on a
// fresh connection to the leader of that moment. Nothing with a body, and
// no write, is resent here: its sender retries (gear app submit carries a
// request id, so a retried submit is not applied twice).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/config"
)

const (
	// forwardDialTimeout bounds a dial to the leader: a lost machine
	// answers no SYN.
	forwardDialTimeout = 500 * time.Millisecond
	// forwardIdleConns bounds the idle connections kept to the leader.
	// More requests than that at once still go out, each on its own
	// connection, which is closed after it.
	forwardIdleConns = 16
	// forwardIdleTimeout closes a pooled connection unused for so long.
	forwardIdleTimeout = 30 * time.Second
	// forwardKeepAlive is the keepalive probes' idle time and interval
	// (whole seconds: the kernel's unit).
	forwardKeepAlive = time.Second
	// forwardAckTimeout is the forwarding sockets' TCP_USER_TIMEOUT: how
	// long data sent to the leader may stay unacknowledged by its machine.
	// It leaves room for two retransmissions (the kernel's first comes
	// after 200 ms, the next 400 ms later).
	forwardAckTimeout = time.Second
	// forwardSmallBody is the largest body sent on connections with
	// forwardAckTimeout: well within any receive window (poolFor).
	forwardSmallBody = 32 << 10
)

// errLeaderChanged cuts a request forwarded to a master that stopped
// being the leader before it answered.
var errLeaderChanged = errors.New("the leader changed before it answered (a write sent to it may or may not have been applied)")

// errNoForwardTarget: at the moment of sending there was no other master
// to forward to (no leader known, or this master leads now).
var errNoForwardTarget = errors.New("no leader to forward to")

// forwarder is the http.RoundTripper of forwarded requests. It sends each
// to the leader of the moment (leader()), whatever host the request names.
type forwarder struct {
	pooled *http.Transport // kept-alive connections, at most forwardIdleConns idle
	bulk   *http.Transport // the same for requests with large bodies (poolFor)
	fresh  *http.Transport // one connection per request: the retry
	// leader is where to forward now: the leader's address, "" when none
	// is known or this master leads.
	leader func() string

	mu       sync.Mutex
	to       string                   // the leader the pool's connections go to
	inflight map[*forwarding]struct{} // requests waiting for their answer
}

// forwarding is one request waiting for its answer.
type forwarding struct {
	to     string
	cancel context.CancelCauseFunc
	cut    bool // by a leader change (under forwarder.mu)
}

// newForwarder builds the transports: TLS with tc (nil without gear.tls);
// slow is the failover timeout, which bounds a TLS handshake (the leader's
// process answers it) and a large body's unacknowledged data (poolFor).
func newForwarder(slow time.Duration, tc *tls.Config, leader func() string) *forwarder {
	f := &forwarder{leader: leader, inflight: map[*forwarding]struct{}{}}
	f.pooled = &http.Transport{
		Proxy:               nil, // never through an HTTP_PROXY of the environment
		DialContext:         closeIdleOnTimeout(forwardDialer(forwardAckTimeout).DialContext, f.closeIdle),
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: slow,
		MaxIdleConns:        forwardIdleConns,
		MaxIdleConnsPerHost: forwardIdleConns,
		IdleConnTimeout:     forwardIdleTimeout,
	}
	f.bulk = f.pooled.Clone()
	f.bulk.DialContext = closeIdleOnTimeout(forwardDialer(slow).DialContext, f.closeIdle)
	f.fresh = f.pooled.Clone()
	f.fresh.DisableKeepAlives = true
	return f
}

// closeIdleOnTimeout wraps dial's connections: when one fails because the
// leader's machine stopped acknowledging (ETIMEDOUT: TCP_USER_TIMEOUT or
// unanswered keepalive probes), closeIdle runs before the failure reaches
// the request. The other pooled connections go to the same machine over
// the same path; without this, net/http would resend a read on the next
// idle one and wait out its timeout too.
func closeIdleOnTimeout(dial func(ctx context.Context, network, addr string) (net.Conn, error), closeIdle func()) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &timeoutWatch{Conn: c, onTimeout: closeIdle}, nil
	}
}

// timeoutWatch is a connection that reports a kernel timeout.
type timeoutWatch struct {
	net.Conn
	onTimeout func()
}

func (c *timeoutWatch) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.check(err)
	return n, err
}

func (c *timeoutWatch) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.check(err)
	return n, err
}

func (c *timeoutWatch) check(err error) {
	if err != nil && errors.Is(err, syscall.ETIMEDOUT) {
		c.onTimeout()
	}
}

// poolFor is the pool a request goes out on. A body that may not fit in
// the leader's receive window (an upload) can stall on a full window while
// the leader's store is slow; Linux then ends a connection after its
// TCP_USER_TIMEOUT even though the leader's kernel answers every window
// probe. So such requests go on connections that allow the failover
// timeout; everything else (bodiless reads, the API's small JSON bodies)
// on ones that give up after forwardAckTimeout.
func (f *forwarder) poolFor(req *http.Request) *http.Transport {
	if req.Body == nil || req.Body == http.NoBody || (req.ContentLength >= 0 && req.ContentLength <= forwardSmallBody) {
		return f.pooled
	}
	return f.bulk
}

// closeIdle closes both pools' idle connections.
func (f *forwarder) closeIdle() {
	f.pooled.CloseIdleConnections()
	f.bulk.CloseIdleConnections()
}

// forwardDialer dials with forwardDialTimeout, keepalive probes every
// forwardKeepAlive, and TCP_USER_TIMEOUT set to ackTimeout (which, with
// keepalive on, also bounds how long probes may go unanswered).
func forwardDialer(ackTimeout time.Duration) *net.Dialer {
	ms := int(ackTimeout.Milliseconds())
	return &net.Dialer{
		Timeout:         forwardDialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: forwardKeepAlive, Interval: forwardKeepAlive, Count: 3},
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set TCP_USER_TIMEOUT on the connection to the leader %s: %w", address, serr)
			}
			return nil
		},
	}
}

// follow makes to the leader the pool serves: on a change, the idle
// connections close and the requests waiting on any other master are cut.
// Called with raft's view of the moment (never an older observation), so
// two callers cannot undo each other's change.
func (f *forwarder) follow(to string) {
	f.mu.Lock()
	if to == f.to {
		f.mu.Unlock()
		return
	}
	f.to = to
	for p := range f.inflight {
		if p.to != to {
			p.cut = true
			p.cancel(errLeaderChanged)
			delete(f.inflight, p)
		}
	}
	f.mu.Unlock()
	f.closeIdle()
}

// RoundTrip sends req to the leader of the moment, on a pooled connection,
// and once more on a fresh one where that is safe (see the file comment).
func (f *forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	to := f.leader()
	f.follow(to)
	if to == "" {
		return nil, errNoForwardTarget
	}
	resp, err, again := f.send(req, to, f.poolFor(req))
	if !again {
		return resp, err
	}
	next := f.leader()
	f.follow(next)
	if next == "" || (next == to && isDialError(err)) {
		// No leader; or net/http already resent it on a fresh connection
		// to this same leader and could not even connect.
		return nil, err
	}
	resp, err2, _ := f.send(req, next, f.fresh)
	if err2 != nil {
		return nil, fmt.Errorf("%w; sent again to %s: %w", err, next, err2)
	}
	return resp, nil
}

// send is one attempt on tr; again says whether the request may be sent
// once more on a fresh connection.
func (f *forwarder) send(req *http.Request, to string, tr *http.Transport) (resp *http.Response, err error, again bool) {
	ctx, cancel := context.WithCancelCause(req.Context())
	p := &forwarding{to: to, cancel: cancel}
	f.mu.Lock()
	if f.to != to {
		// The leader changed since to was read.
		f.mu.Unlock()
		cancel(errLeaderChanged)
		return nil, errLeaderChanged, replayable(req) && req.Context().Err() == nil
	}
	f.inflight[p] = struct{}{}
	f.mu.Unlock()

	var reused atomic.Bool // the last connection tried had served before
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) { reused.Store(c.Reused) }})
	out := req.WithContext(ctx)
	u := *req.URL
	u.Host = to
	out.URL = &u
	resp, err = tr.RoundTrip(out)

	f.mu.Lock()
	cut := p.cut
	delete(f.inflight, p)
	f.mu.Unlock()
	if err == nil && cut {
		// The answer came as the leader changed: its body is cut.
		_ = resp.Body.Close()
		resp, err = nil, errLeaderChanged
	}
	if err != nil {
		cancel(err)
		if cut {
			err = fmt.Errorf("%s: %w", to, errLeaderChanged)
		}
		return nil, err, replayable(req) && req.Context().Err() == nil && (cut || reused.Load())
	}
	if resp.StatusCode != http.StatusSwitchingProtocols { // whose body must stay an io.ReadWriteCloser
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	}
	return resp, nil, false
}

// isDialError says whether err is a failed connect (not a failure on a
// connection that was up).
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replayable: a GET or HEAD without a body, which the leader answers
// without changing anything.
func replayable(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && (req.Body == nil || req.Body == http.NoBody)
}

// cancelOnClose releases a forwarded request's context once its answer
// has been read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

// forwardTarget is where this master forwards now: the leader, "" when
// none is known or this master leads.
func (m *Master) forwardTarget() string {
	if l := m.leader(); l != m.self {
		return l
	}
	return ""
}

// forwardSlowTimeout bounds what forwarding waits for from the leader's
// process, not only its kernel: a TLS handshake, and a large body the
// leader is slow to read (poolFor). It is the failover timeout, the time
// gear gives a silent master before it acts, so that a paused leader is
// not given up on sooner.
func (m *Master) forwardSlowTimeout() time.Duration {
	if t := m.opts.FailoverTimeout; t > 0 {
		return max(t, time.Second)
	}
	return config.Default().FailoverTimeout
}
