package cluster

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// TokenHeader carries the cluster token: "Authorization: Bearer TOKEN".
const TokenHeader = "Authorization"

// SetToken puts the cluster token on an outgoing request ("" sets nothing).
func SetToken(h http.Header, token string) {
	if token != "" {
		h.Set(TokenHeader, "Bearer "+token)
	}
}

// CheckToken tells whether r carries want (always nil when want is ""). The
// comparison takes the same time whatever the token sent: both sides are
// hashed first, so neither a wrong byte's position nor the length leaks.
// The error says how to pass the token.
func CheckToken(r *http.Request, want string) error {
	if want == "" {
		return nil
	}
	h := r.Header.Get(TokenHeader)
	got, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		got = ""
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(g[:], w[:]) == 1 && got != "" {
		return nil
	}
	what := "wrong"
	switch {
	case h == "":
		what = "missing"
	case !ok:
		what = "malformed (want \"Authorization: Bearer TOKEN\")"
	}
	return errors.New(what + " cluster token: this cluster needs its token (gear.auth.token) on every call; " +
		"pass -token TOKEN to gear, or set GEAR_TOKEN or gear.auth.token in gear.conf to the masters' token " +
		"(HTTP clients send the header \"Authorization: Bearer TOKEN\")")
}
