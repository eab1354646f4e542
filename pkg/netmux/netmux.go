// Package netmux puts several protocols on the one TCP port a user typed
// (`node1:3000`): HTTP, raft and gossip streams. Raft's and memberlist's
// stream protocols both begin with small type bytes that collide, so every
// non-HTTP dialer writes a fixed 8-byte protocol prefix that the listening
// side matches on (with github.com/soheilhy/cmux) and strips before the
// protocol sees the stream. Everything that does not carry a prefix is HTTP.
//
// netmux knows nothing about the protocols themselves.
//
// # TLS
//
// With a TLS configuration (ListenTLS, gear.tls.*), the prefix comes first
// and TLS after it: a raft or gossip dialer writes its 8 plaintext prefix
// bytes, then runs a TLS handshake inside that stream; HTTP has no prefix
// and starts with the TLS ClientHello itself, so an ordinary https client
// (curl, a browser, the CLI) talks to the port as to any https server.
// Why this order and not TLS first with the prefix inside:
//   - each protocol gets its own client-auth policy, enforced by the TLS
//     handshake itself: raft and gossip streams require a client
//     certificate that chains to the cluster CA
//     (tls.RequireAndVerifyClientCert); HTTP verifies one if given
//     (tls.VerifyClientCertIfGiven), so the CLI may come with the token
//     alone, while routes that must come from a node (worker heartbeats)
//     check r.TLS for a verified chain. With TLS first, one handshake
//     would have to serve all protocols with the weakest policy, and the
//     stream listeners would re-check certificates by hand;
//   - the HTTP server sees a real *tls.Conn, so r.TLS is set;
//   - standard https clients need no gear-specific prefix.
//
// The cost is that the 8 prefix bytes (which protocol a stream carries)
// travel in the clear; they hold nothing secret. Anything on the port that
// is neither a prefix nor a TLS ClientHello is a plaintext client: it gets
// an HTTP 400 in plaintext that says to use https and -ca, and the
// connection closes, so it never hangs. A prefixed stream whose handshake
// fails (a node without gear.tls, a certificate from another CA) is logged
// at warn level and closed.
//
// Gossip also uses UDP packets on the same port number; those are not
// TLS. They are covered by memberlist's encryption (gear.gossip.key, AES-GCM).
package netmux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/soheilhy/cmux"
)

// Protocol prefixes. Each is exactly PrefixLen bytes.
const (
	PrefixLen = 8
	Raft      = "GEARRFT1"
	Gossip    = "GEARGSP1"
)

// ErrPortInUse is returned by Listen when another process holds the port.
var ErrPortInUse = errors.New("port already in use")

// Mux splits one TCP listener into protocol listeners.
type Mux struct {
	root net.Listener
	cm   cmux.CMux
	once sync.Once
	tls  *tls.Config // nil = plaintext
	log  *slog.Logger
}

// Listen binds addr ("host:port"). A busy port gives an error that says so
// in words an operator can act on.
func Listen(addr string) (*Mux, error) {
	return ListenTLS(addr, nil, nil)
}

// ListenTLS binds addr and, when cfg is set, serves TLS on every protocol
// (see the package doc): cfg holds the node's certificate and the CA that
// client certificates must chain to (ClientCAs). Handshake failures of
// streams are logged to log (nil = discarded).
func ListenTLS(addr string, cfg *tls.Config, log *slog.Logger) (*Mux, error) {
	if cfg != nil && (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil || cfg.ClientCAs == nil) {
		return nil, errors.New("netmux: a TLS configuration needs a certificate and ClientCAs (gear.tls.cert, gear.tls.key and gear.tls.ca)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, ListenError(addr, err)
	}
	m := &Mux{root: ln, cm: cmux.New(ln), tls: cfg, log: log}
	m.cm.SetReadTimeout(10 * time.Second)
	// A connection that matches nothing is closed; that is not fatal.
	m.cm.HandleError(func(error) bool { return true })
	return m, nil
}

// ListenError turns a bind error into an operator-readable one.
func ListenError(addr string, err error) error {
	_, port, _ := net.SplitHostPort(addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: port %s is already in use by another process (%s); stop it or choose another port with -port", ErrPortInUse, port, addr)
	}
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("cannot listen on %s: address not available on this machine; check -ip / gear.hostname: %w", addr, err)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("cannot listen on %s: permission denied (ports below 1024 need privileges): %w", addr, err)
	}
	return fmt.Errorf("cannot listen on %s: %w", addr, err)
}

// Addr is the bound address (useful with port 0).
func (m *Mux) Addr() net.Addr { return m.root.Addr() }

// Port is the bound TCP port.
func (m *Mux) Port() int {
	_, p, _ := net.SplitHostPort(m.root.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// Protocol returns a listener for streams that begin with prefix; the prefix
// is consumed before Accept returns the connection. Call before Serve.
func (m *Mux) Protocol(prefix string) net.Listener {
	if len(prefix) != PrefixLen {
		panic("netmux: prefix must be 8 bytes: " + prefix)
	}
	l := newSubListener(m.cm.Match(prefixMatcher(prefix)), m.root.Addr(), true)
	if m.tls != nil {
		cfg := m.tls.Clone()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		l.wrap = func(c net.Conn) (net.Conn, error) {
			tc := tls.Server(c, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			defer cancel()
			if err := tc.HandshakeContext(ctx); err != nil {
				m.log.Warn("refused a "+protocolName(prefix)+" stream: its TLS handshake failed (is the peer configured with gear.tls, with a certificate from the same CA?)",
					"from", c.RemoteAddr().String(), "err", err)
				return nil, err
			}
			return tc, nil
		}
	}
	return l
}

// handshakeTimeout bounds a stream's TLS handshake.
const handshakeTimeout = 10 * time.Second

func protocolName(prefix string) string {
	switch prefix {
	case Raft:
		return "raft"
	case Gossip:
		return "gossip"
	}
	return prefix
}

// HTTP returns a listener for everything else. Call after all Protocol calls
// and before Serve. With TLS it returns *tls.Conn connections (the HTTP
// server runs the handshake; client certificates are verified if given),
// and answers plaintext clients with a 400 that says to use https.
func (m *Mux) HTTP() net.Listener {
	if m.tls == nil {
		return newSubListener(m.cm.Match(cmux.Any()), m.root.Addr(), false)
	}
	l := newSubListener(m.cm.Match(tlsHello), m.root.Addr(), false)
	cfg := m.tls.Clone()
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	l.wrap = func(c net.Conn) (net.Conn, error) { return tls.Server(c, cfg), nil }
	plain := m.cm.Match(cmux.Any())
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			go refusePlaintext(c)
		}
	}()
	return l
}

// prefixMatcher matches streams that begin with prefix. Unlike
// cmux.PrefixMatcher, which waits for the whole prefix, it reads a byte
// at a time and gives up at the first byte that differs, so a client
// that sent one byte of something else is answered at once.
func prefixMatcher(prefix string) cmux.Matcher {
	return func(r io.Reader) bool {
		var b [1]byte
		for i := 0; i < len(prefix); i++ {
			if _, err := io.ReadFull(r, b[:]); err != nil || b[0] != prefix[i] {
				return false
			}
		}
		return true
	}
}

// tlsHello matches a stream that starts with a TLS handshake record.
func tlsHello(r io.Reader) bool {
	var b [1]byte
	n, _ := io.ReadFull(r, b[:])
	return n == 1 && b[0] == 0x16
}

// PlaintextRefusal is the body a plaintext client gets from a TLS port:
// the JSON error shape of the API, so the CLI shows it as it is.
const PlaintextRefusal = `{"error":"this node speaks TLS (gear.tls is set): use https://, and give the CLI the cluster CA with -ca FILE or GEAR_CA (or gear.tls.ca in gear.conf)"}` + "\n"

// refusePlaintext answers a plaintext client in words and closes: the
// request it sent is read (briefly) first, so the answer is not lost to
// a reset.
func refusePlaintext(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(PlaintextRefusal), PlaintextRefusal)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else if mc, ok := c.(*cmux.MuxConn); ok {
		if tc, ok := mc.Conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// Serve dispatches connections until Close.
func (m *Mux) Serve() error {
	err := m.cm.Serve()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, cmux.ErrServerClosed) || errors.Is(err, cmux.ErrListenerClosed) {
		return nil
	}
	return err
}

// Close stops accepting; protocol listeners return errors from Accept.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		m.cm.Close()
		err = m.root.Close()
	})
	return err
}

// subListener is one protocol's share of the port. Closing it stops its
// Accept at once (cmux's own sub-listeners would close the shared root
// listener instead, and do not unblock Accept); a pump goroutine moves
// matched connections to it until the Mux closes.
type subListener struct {
	// wrap, if set, turns an accepted (and stripped) connection into
	// what Accept returns (TLS); an error drops the connection.
	wrap   func(net.Conn) (net.Conn, error)
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newSubListener(src net.Listener, addr net.Addr, strip bool) *subListener {
	l := &subListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
	go l.pump(src, strip)
	return l
}

func (l *subListener) pump(src net.Listener, strip bool) {
	for {
		c, err := src.Accept()
		if err != nil {
			return // the Mux closed
		}
		if strip || l.wrap != nil {
			go l.stripAndDeliver(c, strip)
			continue
		}
		l.deliver(c)
	}
}

func (l *subListener) stripAndDeliver(c net.Conn, strip bool) {
	if strip {
		var p [PrefixLen]byte
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, p[:]); err != nil {
			_ = c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
	}
	if l.wrap != nil {
		w, err := l.wrap(c)
		if err != nil {
			_ = c.Close()
			return
		}
		c = w
	}
	l.deliver(c)
}

func (l *subListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.addr }

// Dial opens a stream to addr for the protocol named by prefix.
func Dial(ctx context.Context, addr, prefix string, timeout time.Duration) (net.Conn, error) {
	return DialTLS(ctx, addr, prefix, timeout, nil)
}

// DialTLS opens a stream to addr for the protocol named by prefix and,
// when cfg is set, runs a TLS handshake after the prefix (the package doc
// says why in this order). cfg carries this node's client certificate and
// the cluster CA; ServerName defaults to addr's host, so the peer's
// certificate must name the address it is dialled at (IP or DNS SAN).
func DialTLS(ctx context.Context, addr, prefix string, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, prefix); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	if cfg == nil {
		return c, nil
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake with %s (%s stream): %w", addr, protocolName(prefix), err)
	}
	return tc, nil
}
