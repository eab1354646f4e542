package bundle

import (
	"os"
	"testing"
)

// TestExampleWebManifest: the web example parses, with its listen port and
// its health check as documented there.
func TestExampleWebManifest(t *testing.T) {
	b, err := os.ReadFile("../../conf/examples/web/gear-app.conf")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(b, "gear-app.conf")
	if err != nil {
		t.Fatal(err)
	}
	p := m.Processes[0]
	if len(p.Listen) != 1 || p.Listen[0] != 8080 || p.Health == nil || p.Health.HTTP != "/" || p.Health.Port != 0 || p.Health.Failures != 3 {
		t.Fatalf("web example: %+v health %+v", p, p.Health)
	}
}
