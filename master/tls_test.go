package master

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/tlsconf"
)

// With gear.tls, node-only routes (heartbeats) refuse calls that carry no
// verified client certificate, even with the token; without gear.tls they
// are open to the token as before.
func TestNodeOnly(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	for _, tc := range []struct {
		name   string
		tls    *tlsconf.Node
		state  *tls.ConnectionState
		status int
	}{
		{"plaintext cluster", nil, nil, http.StatusOK},
		{"tls, no client cert", &tlsconf.Node{}, &tls.ConnectionState{}, http.StatusForbidden},
		{"tls, verified client cert", &tlsconf.Node{}, verified, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Master{opts: Options{TLS: tc.tls}, log: slog.New(slog.DiscardHandler), nodeOnlyLogged: map[string]time.Time{}}
			r := httptest.NewRequest("POST", "/api/v1/workers/heartbeat", nil)
			r.TLS = tc.state
			w := httptest.NewRecorder()
			m.nodeOnly(ok)(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if w.Code == http.StatusForbidden && !strings.Contains(w.Body.String(), "gear.tls.ca") {
				t.Fatalf("the refusal does not say what to do: %s", w.Body)
			}
		})
	}
}
