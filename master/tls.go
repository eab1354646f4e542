package master

// TLS between nodes (gear.tls.*): the port's policy is netmux's (raft and
// gossip streams require a client certificate from the cluster CA; HTTP
// verifies one when given, and calls without one need the token). Here:
// how the master dials its peers and workers, and the routes only a node
// may call.

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"
)

// scheme is how this master dials other nodes' HTTP: https with gear.tls.
func (m *Master) scheme() string {
	if m.clientTLS() != nil {
		return "https"
	}
	return "http"
}

// clientTLS is the node's dialing configuration, nil without gear.tls.
func (m *Master) clientTLS() *tls.Config {
	if m.opts.TLS == nil {
		return nil
	}
	return m.opts.TLS.Client
}

// peerTransport carries the master's own calls to other masters and to
// workers (status, join, logs): with the node's client certificate.
func (m *Master) peerTransport() http.RoundTripper {
	if m.peerTr == nil {
		return http.DefaultTransport
	}
	return m.peerTr
}

// forwarder carries the requests this master forwards to the leader, with
// the node's TLS configuration (forward.go).
func (m *Master) forwarder() *forwarder {
	m.fwdOnce.Do(func() {
		if m.fwd == nil {
			m.fwd = newForwarder(m.forwardSlowTimeout(), m.clientTLS(), m.forwardTarget)
		}
	})
	return m.fwd
}

// setupTransports builds the transports once opts are final.
func (m *Master) setupTransports() {
	tc := m.clientTLS()
	m.fwd = newForwarder(m.forwardSlowTimeout(), tc, m.forwardTarget)
	m.peerTr = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
}

// nodeOnly refuses, with gear.tls set, requests that come without a
// client certificate verified against the cluster CA: such routes are for
// workers and masters, never for the CLI (whose token alone is not
// enough there). A follower checks before it forwards; the leader then
// sees the follower's certificate.
func (m *Master) nodeOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m.opts.TLS != nil && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			m.mu.Lock()
			last, seen := m.nodeOnlyLogged[host]
			if !seen || time.Since(last) > time.Minute {
				m.nodeOnlyLogged[host] = time.Now()
				m.log.Warn("refused a node-only call without a client certificate from the cluster CA (logged once a minute per host)", "path", r.URL.Path, "from", r.RemoteAddr)
			}
			m.mu.Unlock()
			writeError(w, fmt.Errorf("%w: %s is for cluster nodes: present a certificate signed by gear.tls.ca (set gear.tls.cert and gear.tls.key on this node)", ErrForbidden, r.URL.Path))
			return
		}
		h(w, r)
	}
}
