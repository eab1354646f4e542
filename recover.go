package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/gear-run/gear/master"
	"github.com/gear-run/gear/pkg/cli"
)

// recoverCommand is `gear masters recover`: offline, it needs the master
// package, so it is registered here rather than in pkg/cli.
func recoverCommand() cli.Command {
	return cli.Command{
		Name: "masters recover", NArgs: 0, Group: "cluster",
		Synopsis: "offline: make a stopped survivor's data dir a new group of the voters given",
		Help: `For when a majority of the masters is lost for good (Consul's peers.json
recovery). Stop every surviving master, then on each survivor run
  gear masters recover -datadir DIR -voters host:port[,host:port...]
with the same -voters (the survivors that form the new group), and start them
again. The state each keeps is what its own data dir holds: writes the old
group acknowledged but never replicated to the survivors are lost. Run it on
the survivor whose log ends at the highest index (it prints it) when only one
is to be kept. Then add new masters with gear masters add.`,
		Flags: func(fs *flag.FlagSet) cli.Action {
			dir := fs.String("datadir", "", "the stopped master's data `dir`")
			voters := fs.String("voters", "", "the new group's voters, `host:port,...` (this master included)")
			return func(ctx context.Context, c *cli.Call) error {
				if *dir == "" || *voters == "" {
					return cli.Usagef("-datadir and -voters are required")
				}
				var vs []string
				for _, v := range strings.Split(*voters, ",") {
					if v = strings.TrimSpace(v); v != "" {
						vs = append(vs, v)
					}
				}
				rep, err := master.Recover(*dir, vs, nil)
				if err != nil {
					return err
				}
				w := c.Stdout
				fmt.Fprintf(w, "recovered %s: the group is now %s (it was %s)\n", rep.DataDir, strings.Join(rep.Voters, ", "), strings.Join(rep.OldVoters, ", "))
				fmt.Fprintf(w, "kept: %d application(s), %d worker(s); this master's log ends at index %d (term %d)\n", rep.Apps, rep.Workers, rep.LastIndex, rep.LastTerm)
				fmt.Fprintln(w, "may be lost: writes the old group acknowledged after index", rep.LastIndex, "(never replicated to this master); entries this master had but the old group never committed now count as committed")
				fmt.Fprintln(w, "next: start this master (and the other voters, recovered the same way); list the new group in gear.cluster.masters; add new masters one at a time with gear masters add HOST:PORT")
				return nil
			}
		},
	}
}
