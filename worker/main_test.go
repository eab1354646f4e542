package worker

import (
	"os"
	"testing"

	"github.com/gear-run/gear/pkg/procs"
)

// TestMain lets the test binary act as the socket-activation shim, as the
// gear binary does: an executor with listen = [...] is started through
// os.Executable().
func TestMain(m *testing.M) {
	procs.RunShim()
	os.Exit(m.Run())
}
