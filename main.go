// Command gear is gear's single binary: `gear master`, `gear worker`,
// `gear local` and the operator commands. bin/master, bin/worker, bin/local
// and bin/gear are thin scripts that build it if needed and exec it.
//
// The daemons are wired here (daemons.go), not in pkg/: package main is
// the only place that imports both master and worker. The operator
// commands live in pkg/cli, whose registry this package adds the daemons to.
package main

import (
	"fmt"
	"os"

	"github.com/gear-run/gear/pkg/cli"
	"github.com/gear-run/gear/pkg/procs"
)

func main() {
	procs.RunShim() // the socket-activation shim: never returns when asked for
	// Descriptors gear inherited (a flock's lock, a supervisor's pipe)
	// are not passed on to the executors and daemons it starts.
	if err := procs.CloseInheritedOnExec(); err != nil {
		fmt.Fprintln(os.Stderr, "gear: warning:", err)
	}
	os.Exit(cli.Main(os.Args[1:], append(daemonCommands(), recoverCommand())...))
}
