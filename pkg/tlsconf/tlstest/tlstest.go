// Package tlstest makes a throwaway CA and certificates for tests (with
// tlsconf's generator, as `gear tls gen` does), written as PEM files
// gear.tls.* can name. Everything lives in t.TempDir().
package tlstest

import (
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/tlsconf"
)

// CA is a test certificate authority.
type CA struct {
	t   testing.TB
	dir string
	a   *tlsconf.Authority
	// File is the CA certificate as a PEM file (gear.tls.ca, -ca).
	File string
}

// Pair names a certificate and key file.
type Pair = tlsconf.Issued

// NewCA makes a CA named name under t.TempDir().
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	dir := t.TempDir()
	a, _, err := tlsconf.OpenOrCreateCA(dir, name+"-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{t: t, dir: dir, a: a, File: a.File}
}

// Issue makes a certificate for a node, valid as server and client, with
// names as its SANs (IP addresses become IP SANs, others DNS names).
func (ca *CA) Issue(name string, names ...string) Pair {
	ca.t.Helper()
	p, err := ca.a.Issue(ca.dir, name, names, 24*time.Hour)
	if err != nil {
		ca.t.Fatal(err)
	}
	return p
}
