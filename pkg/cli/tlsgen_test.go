package cli

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/tlsconf"
)

// gear tls gen writes a CA and node certificates that gear.tls loads and
// that verify for the names given; a second run reuses the CA.
func TestTLSGen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if code, out, errOut := gearRun(t, "tls", "gen", "-dir", dir, "node1,127.0.0.1", "node2"); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if code, out, errOut := gearRun(t, "tls", "gen", "-dir", dir, "node3,localhost"); code != 0 || !strings.Contains(out, "reused CA") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	if ca2, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(ca1) != string(ca2) {
		t.Fatal("the second run replaced the CA")
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v %v, want mode 0600", fi, err)
	}
	for _, tc := range []struct{ node, name string }{{"node1", "127.0.0.1"}, {"node1", "node1"}, {"node3", "localhost"}} {
		n, err := tlsconf.LoadNode(tlsconf.Files{Cert: filepath.Join(dir, tc.node+".pem"), Key: filepath.Join(dir, tc.node+"-key.pem"), CA: filepath.Join(dir, "ca.pem")})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(n.Server.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		opts := x509.VerifyOptions{Roots: n.Client.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		if net.ParseIP(tc.name) == nil {
			opts.DNSName = tc.name
		}
		if _, err := leaf.Verify(opts); err != nil {
			t.Fatalf("%s for %s: %v", tc.node, tc.name, err)
		}
		if err := leaf.VerifyHostname(tc.name); err != nil {
			t.Fatalf("%s: %v", tc.node, err)
		}
	}
	if code, _, errOut := gearRun(t, "tls", "gen", "-dir", dir, "ca"); code != 2 || !strings.Contains(errOut, `not "ca"`) {
		t.Fatalf("a node named ca: exit %d %s", code, errOut)
	}
}
