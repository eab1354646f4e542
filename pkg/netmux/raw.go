package netmux

import (
	"net"

	"github.com/soheilhy/cmux"
)

// TCPConn returns the TCP connection under c, an HTTP connection this
// package's listener delivered (a *cmux.MuxConn around a *net.TCPConn)
// or a plain *net.TCPConn, so that a handler that hijacked c can splice
// from the socket. ok is false for anything else (TLS).
//
// Reading the TCP connection directly skips what cmux buffered while it
// sniffed the protocol; that is safe for an HTTP connection whose request
// headers were parsed: cmux.Any() sniffs nothing, and the prefix matchers
// tried before it read at most PrefixLen bytes, all of them part of the
// first request line, which the HTTP server read before its handler ran.
func TCPConn(c net.Conn) (tc *net.TCPConn, ok bool) {
	switch v := c.(type) {
	case *net.TCPConn:
		return v, true
	case *cmux.MuxConn:
		tc, ok = v.Conn.(*net.TCPConn)
		return tc, ok
	}
	return nil, false
}
