// Package netmux puts several protocols on the one TCP port a user typed
// (`node1:3000`): HTTP, raft and gossip streams. Raft's and memberlist's
// stream protocols both begin with small type bytes that collide, so every
// non-HTTP dialer writes a fixed 8-byte protocol prefix that the listening
// side matches on (with github.com/soheilhy/cmux) and strips before the
// protocol sees the stream. Everything that does not carry a prefix is HTTP.
//
// netmux knows nothing about the protocols themselves.
package netmux

import (
	"context"
	"errors"
	"fmt"
	"io"
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
}

// Listen binds addr ("host:port"). A busy port gives an error that says so
// in words an operator can act on.
func Listen(addr string) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, ListenError(addr, err)
	}
	m := &Mux{root: ln, cm: cmux.New(ln)}
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
	return newSubListener(m.cm.Match(cmux.PrefixMatcher(prefix)), m.root.Addr(), true)
}

// HTTP returns a listener for everything else. Call after all Protocol calls
// and before Serve.
func (m *Mux) HTTP() net.Listener {
	return newSubListener(m.cm.Match(cmux.Any()), m.root.Addr(), false)
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
		if strip {
			go l.stripAndDeliver(c)
			continue
		}
		l.deliver(c)
	}
}

func (l *subListener) stripAndDeliver(c net.Conn) {
	var p [PrefixLen]byte
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, p[:]); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
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
	return c, nil
}
