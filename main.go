// Command gear is gear's single binary: `gear master`, `gear worker`,
// `gear local` and the operator commands. bin/master, bin/worker, bin/local
// and bin/gear are thin scripts that build it if needed and exec it.
package main

import (
	"os"

	"github.com/gear-run/gear/pkg/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
