package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// fakeLeader is a test "leader": it counts the connections it accepted and
// closed, and the requests it got by path.
type fakeLeader struct {
	srv            *httptest.Server
	name           string
	opened, closed atomic.Int64
	mu             sync.Mutex
	got            map[string]int
	// hold, when set, blocks requests to /hold until it is closed; held
	// says one arrived.
	hold, held chan struct{}
	// dropOnce: the first request to /drop is read whole, then its
	// connection is closed without an answer.
	dropped atomic.Bool
}

func newFakeLeader(t *testing.T, name string, tlsOn bool) *fakeLeader {
	t.Helper()
	l := &fakeLeader{name: name, got: map[string]int{}, hold: make(chan struct{}), held: make(chan struct{}, 4)}
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		l.mu.Lock()
		l.got[r.Method+" "+r.URL.Path]++
		l.mu.Unlock()
		switch r.URL.Path {
		case "/hold":
			l.held <- struct{}{}
			select {
			case <-l.hold:
			case <-r.Context().Done():
				return
			}
		case "/drop":
			if !l.dropped.Swap(true) {
				c, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = c.Close()
				}
				return
			}
		}
		_, _ = io.WriteString(w, l.name)
	}))
	l.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			l.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			l.closed.Add(1)
		}
	}
	if tlsOn {
		l.srv.StartTLS()
	} else {
		l.srv.Start()
	}
	t.Cleanup(func() {
		select {
		case <-l.hold:
		default:
			close(l.hold)
		}
		l.srv.Close()
	})
	return l
}

func (l *fakeLeader) addr() string {
	return strings.TrimPrefix(strings.TrimPrefix(l.srv.URL, "http://"), "https://")
}

func (l *fakeLeader) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[key]
}

// fwdWait polls cond until it holds or the deadline passes.
func fwdWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forwardDo sends a request through f (the host in the URL is ignored:
// f sends to its leader) and returns the body of the answer.
func forwardDo(f *forwarder, method, path, body string) (string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, "http://ignored.invalid"+path, rd)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: f}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestForwardReusesConnectionsAndDropsThemOnLeaderChange(t *testing.T) {
	a, b := newFakeLeader(t, "a", false), newFakeLeader(t, "b", false)
	var leader atomic.Value
	leader.Store(a.addr())
	f := newForwarder(2*time.Second, nil, func() string { return leader.Load().(string) })
	for i := range 20 {
		got, err := forwardDo(f, "GET", "/x", "")
		if err != nil || got != "a" {
			t.Fatalf("request %d: %q, %v; want a's answer", i, got, err)
		}
	}
	if n := a.opened.Load(); n != 1 {
		t.Fatalf("20 requests one after the other opened %d connections to the leader, want 1 (kept alive)", n)
	}

	// The leader changes, as raft's observation reports it: the idle
	// connection to the old one is closed at once, before any request.
	leader.Store(b.addr())
	f.follow(b.addr())
	fwdWait(t, "the old leader's connection is closed", func() bool { return a.closed.Load() == 1 })
	for i := range 20 {
		if got, err := forwardDo(f, "GET", "/x", ""); err != nil || got != "b" {
			t.Fatalf("request %d after the change: %q, %v; want b's answer", i, got, err)
		}
	}
	if n := b.opened.Load(); n != 1 {
		t.Fatalf("20 requests to the new leader opened %d connections, want 1", n)
	}

	// A change the observation did not report (yet) is seen by the next
	// request: the pool's connections to b go before it is sent to a.
	leader.Store(a.addr())
	if got, err := forwardDo(f, "GET", "/x", ""); err != nil || got != "a" {
		t.Fatalf("after the second change: %q, %v; want a's answer", got, err)
	}
	fwdWait(t, "b's connection is closed", func() bool { return b.closed.Load() == 1 })
	if n := a.opened.Load(); n != 2 {
		t.Fatalf("a opened %d connections, want 2 (its old one was closed at the first change)", n)
	}
}

func TestForwardOverTLSReusesConnections(t *testing.T) {
	a := newFakeLeader(t, "a", true)
	tc := a.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	f := newForwarder(2*time.Second, tc, a.addr)
	for i := range 10 {
		req, _ := http.NewRequest("GET", "https://ignored.invalid/x", nil)
		resp, err := (&http.Client{Transport: f}).Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "a" || resp.TLS == nil {
			t.Fatalf("request %d: %q, TLS %v; want a's answer over TLS", i, b, resp.TLS != nil)
		}
	}
	if n := a.opened.Load(); n != 1 {
		t.Fatalf("10 requests over TLS opened %d connections, want 1", n)
	}
}

func TestForwardCutsRequestsWaitingOnAnOldLeader(t *testing.T) {
	a, b := newFakeLeader(t, "a", false), newFakeLeader(t, "b", false)
	close(b.hold) // only a holds requests
	var leader atomic.Value
	leader.Store(a.addr())
	f := newForwarder(2*time.Second, nil, func() string { return leader.Load().(string) })

	type answer struct {
		body string
		err  error
	}
	send := func(method, body string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			got, err := forwardDo(f, method, "/hold", body)
			ch <- answer{got, err}
		}()
		select {
		case <-a.held:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s /hold never reached the leader", method)
		}
		return ch
	}

	// A read waiting on a leader that is deposed is sent again, to the new
	// one, which answers it.
	get := send("GET", "")
	leader.Store(b.addr())
	f.follow(b.addr())
	select {
	case r := <-get:
		if r.err != nil || r.body != "b" {
			t.Fatalf("GET cut by the leader change: %q, %v; want the new leader's answer", r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a GET waiting on the old leader was not cut by the leader change")
	}

	// A write is cut too, but never sent again: it may have been applied.
	leader.Store(a.addr())
	f.follow(a.addr())
	post := send("POST", `{"name":"x"}`)
	leader.Store(b.addr())
	f.follow(b.addr())
	select {
	case r := <-post:
		if !errors.Is(r.err, errLeaderChanged) {
			t.Fatalf("POST cut by the leader change: %q, %v; want an error wrapping errLeaderChanged", r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a POST waiting on the old leader was not cut by the leader change")
	}
	if n := b.count("POST /hold"); n != 0 {
		t.Fatalf("the cut POST was resent to the new leader %d times, want 0", n)
	}
	if n := a.count("POST /hold"); n != 1 {
		t.Fatalf("the old leader got the POST %d times, want 1", n)
	}
}

func TestForwardResendsOnlyReadsOnAReusedConnection(t *testing.T) {
	tests := []struct {
		method, body string
		wantErr      bool
		wantSent     int
	}{
		// A GET whose reused connection died before any answer is sent
		// again and answered.
		{method: "GET", wantSent: 2},
		// A POST with a body, read whole by the leader, is not.
		{method: "POST", body: `{"name":"x"}`, wantErr: true, wantSent: 1},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			a := newFakeLeader(t, "a", false)
			f := newForwarder(2*time.Second, nil, a.addr)
			if _, err := forwardDo(f, "GET", "/x", ""); err != nil { // the connection is pooled now
				t.Fatal(err)
			}
			got, err := forwardDo(f, tt.method, "/drop", tt.body)
			if tt.wantErr && err == nil {
				t.Fatalf("%s on a connection closed under it: answer %q, want an error", tt.method, got)
			}
			if !tt.wantErr && (err != nil || got != "a") {
				t.Fatalf("%s on a connection closed under it: %q, %v; want a's answer", tt.method, got, err)
			}
			if n := a.count(tt.method + " /drop"); n != tt.wantSent {
				t.Fatalf("the leader got the %s %d times, want %d", tt.method, n, tt.wantSent)
			}
		})
	}
}

func TestForwardWithoutLeader(t *testing.T) {
	f := newForwarder(2*time.Second, nil, func() string { return "" })
	if _, err := forwardDo(f, "GET", "/x", ""); !errors.Is(err, errNoForwardTarget) {
		t.Fatalf("no leader: %v, want errNoForwardTarget", err)
	}
}

func TestForwardSocketOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := forwardDialer(forwardAckTimeout).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ut, ka, idle int
	var gerr error
	_ = raw.Control(func(fd uintptr) {
		ut, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if gerr == nil {
			ka, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		}
		if gerr == nil {
			idle, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		}
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if ut != int(forwardAckTimeout.Milliseconds()) || ka != 1 || idle != 1 {
		t.Fatalf("TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d, TCP_KEEPIDLE %d s; want %d, 1, 1", ut, ka, idle, forwardAckTimeout.Milliseconds())
	}
}

// A leader that stops reading an upload for several times
// forwardAckTimeout (its receive window full, its store slow) still gets
// it whole: Linux ends a connection whose window stays shut past its
// TCP_USER_TIMEOUT even while the window probes are answered, so large
// bodies go on connections that allow the failover timeout. A read goes on
// the quick ones.
func TestForwardLargeBodyToASlowReader(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 3 s")
	}
	const size = 64 << 20
	pause := 3 * forwardAckTimeout
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			time.Sleep(pause)
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	f := newForwarder(10*time.Second, nil, func() string { return addr })
	var quick, bulk atomic.Int32
	count := func(tr *http.Transport, n *atomic.Int32) {
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			n.Add(1)
			return dial(ctx, network, a)
		}
	}
	count(f.pooled, &quick)
	count(f.bulk, &bulk)
	if got, err := forwardDo(f, "GET", "/x", ""); err != nil || got != "0" {
		t.Fatalf("GET: %q %v", got, err)
	}
	start := time.Now()
	got, err := forwardDo(f, "POST", "/upload", strings.Repeat("x", size))
	if err != nil || got != fmt.Sprint(size) {
		t.Fatalf("a %d MiB body to a leader that read nothing for %v: %q %v after %v", size>>20, pause, got, err, time.Since(start).Round(time.Millisecond))
	}
	if quick.Load() != 1 || bulk.Load() != 1 {
		t.Fatalf("dials: %d quick, %d bulk; want the read on a quick connection and the upload on a bulk one", quick.Load(), bulk.Load())
	}
}

// connLog counts the connections a forwarder dialed, and closed, by address.
type connLog struct {
	mu             sync.Mutex
	dialed, closed map[string]int
}

type loggedConn struct {
	net.Conn
	log  *connLog
	once sync.Once
}

func (c *loggedConn) Close() error {
	c.once.Do(func() {
		c.log.mu.Lock()
		c.log.closed[c.RemoteAddr().String()]++
		c.log.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *connLog) count(m map[string]int, addr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return m[addr]
}

// A real follower (three masters in this process) forwards its reads on
// one kept-alive connection, and closes it when raft tells it the leader
// moved, before any request asks.
func TestFollowerForwardsOnOneConnectionUntilTheLeaderMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	// The follower's dials are logged (set before Run: nothing forwards yet).
	cl := &connLog{dialed: map[string]int{}, closed: map[string]int{}}
	ms := startMasters(t, 3, 0, func(_ int, m *Master) {
		dial := m.fwd.pooled.DialContext
		m.fwd.pooled.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cl.mu.Lock()
			cl.dialed[addr]++
			cl.mu.Unlock()
			return &loggedConn{Conn: c, log: cl}, nil
		}
	})
	leaderOf := func() *Master {
		for _, m := range ms {
			if m.isLeader() {
				return m
			}
		}
		return nil
	}
	var lead *Master
	fwdWait(t, "a leader that every master knows", func() bool {
		lead = leaderOf()
		if lead == nil {
			return false
		}
		for _, m := range ms {
			if m.leader() != lead.Addr() {
				return false
			}
		}
		return true
	})
	var follower, other *Master
	for _, m := range ms {
		switch {
		case m == lead:
		case follower == nil:
			follower = m
		default:
			other = m
		}
	}
	read := func(n int, want string) {
		t.Helper()
		for i := range n {
			resp, err := http.Get("http://" + follower.Addr() + "/api/v1/apps")
			if err != nil {
				t.Fatalf("read %d through the follower: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("read %d through the follower: HTTP %d", i, resp.StatusCode)
			}
		}
		if d := cl.count(cl.dialed, want); d != 1 {
			t.Fatalf("%d reads forwarded to the leader %s dialed it %d times, want 1", n, want, d)
		}
	}
	read(30, lead.Addr())

	old := lead.Addr()
	if err := lead.raft.raft.LeadershipTransferToServer(raft.ServerID(other.Addr()), raft.ServerAddress(other.Addr())).Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	fwdWait(t, "the follower's connection to the old leader to close", func() bool { return cl.count(cl.closed, old) == 1 })
	fwdWait(t, "the follower to know the new leader", func() bool { return follower.leader() == other.Addr() })
	read(30, other.Addr())
}

// A pooled connection that the kernel ends with ETIMEDOUT (the leader's
// machine stopped acknowledging) closes the pool's idle connections before
// its error reaches net/http, so a read resent on "another connection" does
// not wait out the same timeout on the next idle one to the same machine.
func TestForwardTimeoutClosesIdleConnections(t *testing.T) {
	timedOut := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	for _, tc := range []struct {
		err   error
		close bool
	}{{timedOut, true}, {io.EOF, false}, {&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false}} {
		var closed atomic.Int32
		dial := closeIdleOnTimeout(func(context.Context, string, string) (net.Conn, error) {
			return failingConn{err: tc.err}, nil
		}, func() { closed.Add(1) })
		c, err := dial(context.Background(), "tcp", "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != tc.err {
			t.Fatalf("read error %v, want %v passed on", err, tc.err)
		}
		if _, err := c.Write([]byte{1}); err != tc.err {
			t.Fatalf("write error %v, want %v passed on", err, tc.err)
		}
		if got := closed.Load() > 0; got != tc.close {
			t.Errorf("after %v: idle connections closed %v, want %v", tc.err, got, tc.close)
		}
	}
}

// failingConn fails every read and write with err.
type failingConn struct {
	net.Conn
	err error
}

func (c failingConn) Read([]byte) (int, error)  { return 0, c.err }
func (c failingConn) Write([]byte) (int, error) { return 0, c.err }
