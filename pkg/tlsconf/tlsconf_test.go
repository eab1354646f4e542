package tlsconf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/tlsconf"
	"github.com/gear-run/gear/pkg/tlsconf/tlstest"
)

func TestLoadNode(t *testing.T) {
	ca := tlstest.NewCA(t, "c")
	other := tlstest.NewCA(t, "o")
	p := ca.Issue("n", "127.0.0.1")
	q := other.Issue("m", "127.0.0.1")
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files tlsconf.Files
		want  string // "" = loads; "off" = nil, nil
	}{
		{"off", tlsconf.Files{}, "off"},
		{"a CA alone is for clients", tlsconf.Files{CA: ca.File}, "off"},
		{"ok", tlsconf.Files{Cert: p.Cert, Key: p.Key, CA: ca.File}, ""},
		{"cert without key", tlsconf.Files{Cert: p.Cert, CA: ca.File}, "set both gear.tls.cert and gear.tls.key"},
		{"no ca", tlsconf.Files{Cert: p.Cert, Key: p.Key}, "gear.tls.ca is not set"},
		{"missing cert file", tlsconf.Files{Cert: p.Cert + ".no", Key: p.Key, CA: ca.File}, "no such file"},
		{"key of another cert", tlsconf.Files{Cert: p.Cert, Key: q.Key, CA: ca.File}, "private key does not match"},
		{"ca not PEM", tlsconf.Files{Cert: p.Cert, Key: p.Key, CA: notPEM}, "holds no PEM certificate"},
		{"missing ca", tlsconf.Files{Cert: p.Cert, Key: p.Key, CA: notPEM + ".no"}, "must name a PEM file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tlsconf.LoadNode(tc.files)
			switch tc.want {
			case "off":
				if n != nil || err != nil {
					t.Fatalf("got %v, %v; want nil, nil", n, err)
				}
			case "":
				if err != nil || n == nil || n.Server.ClientCAs == nil || n.Client.RootCAs == nil || len(n.Client.Certificates) != 1 {
					t.Fatalf("got %+v, %v", n, err)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want it to say %q", err, tc.want)
				}
			}
		})
	}
}
