package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/hocon"
	"github.com/gear-run/gear/pkg/tlsconf"
)

// Groups of `gear help`, in the order they are listed after the daemons.
const (
	groupApps    = "applications"
	groupCluster = "cluster"
	groupOther   = "configuration and help"
)

// Commands returns the operator commands. Package main adds the daemons.
//
// Adding a command is one entry here. A command that calls the API and
// prints a result for people or as JSON needs only a getter and a table:
//
//	{
//		Name: "workers remove", Args: "ID", NArgs: 1, Group: groupCluster, Global: ClusterFlags,
//		Synopsis: "forget a worker",
//		Run: request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
//			return "worker " + c.Args[0] + " removed", cl.RemoveWorker(ctx, c.Args[0])
//		}),
//	},
//
// Flags are defined in Flags(fs), which returns the Action; help, usage
// and the README's CLI block (go test . -run README -update) follow.
func Commands() []Command {
	return []Command{
		{
			Name: "app submit", Args: "BUNDLE", NArgs: 1, Rest: true, Group: groupApps, Global: ClusterFlags,
			Synopsis: "upload a bundle and start it as a new application; prints the app id",
			Help: `BUNDLE is a .jar (run as java -cp BUNDLE MAIN ARGS) or a .tar.gz/.zip with a
gear-app.conf manifest at its root. Arguments after -- are appended to every
process's command.`,
			Flags: appSubmit,
		},
		{
			Name: "app update", Args: "ID BUNDLE", NArgs: 2, Rest: true, Group: groupApps, Global: ClusterFlags,
			Synopsis: "roll an application to a new bundle version, one executor at a time",
			Help: `Each executor moves to the new version once every executor of the app is
ready. A version whose new instances fail (FAILED, or crashing again and
again) is rolled back automatically; gear app history shows why. The new
bundle keeps the app's process groups; their instance counts stay.`,
			Flags: appUpdate,
		},
		{
			Name: "app history", Args: "ID", NArgs: 1, Group: groupApps, Global: ClusterFlags, JSON: true,
			Synopsis: "list an application's bundle versions with their digests and times",
			Flags:    appHistory,
		},
		{
			Name: "app rollback", Args: "ID [VERSION]", NArgs: -1, Group: groupApps, Global: ClusterFlags, JSON: true,
			Synopsis: "roll an application back to VERSION (default: the one before the current)",
			Flags:    appRollback,
		},
		{
			Name: "app list", NArgs: 0, Group: groupApps, Global: ClusterFlags, JSON: true,
			Synopsis: "list the applications and how many of their executors run",
			Run:      show(listApps, appTable),
		},
		{
			Name: "app info", Args: "ID", NArgs: 1, Group: groupApps, Global: ClusterFlags, JSON: true,
			Synopsis: "show an application and each of its executors",
			Run: show(func(ctx context.Context, cl *cluster.Client, c *Call) (*cluster.App, error) {
				return cl.App(ctx, c.Args[0])
			}, appInfoTable),
		},
		{
			Name: "app kill", Args: "ID", NArgs: 1, Group: groupApps, Global: ClusterFlags,
			Synopsis: "stop every executor of an application for good (state KILLED)",
			Run: request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
				return "app " + c.Args[0] + ": kill requested", cl.Kill(ctx, c.Args[0])
			}),
		},
		{
			Name: "app restart", Args: "ID", NArgs: 1, Group: groupApps, Global: ClusterFlags,
			Synopsis: "rolling restart: one executor at a time, the next once the previous runs",
			Flags:    appRestart,
		},
		{
			Name: "app disable", Args: "ID", NArgs: 1, Group: groupApps, Global: ClusterFlags,
			Synopsis: "take an application out of rotation: its executors' /ecv say UNAVAILABLE, they keep running",
			Help: `Each executor has an ECV page on its worker, http://WORKER/ecv/EXECUTOR (open,
like /ecv): AVAILABLE (200) while the worker reaches the leader and is not
draining, the executor runs, its health check does not fail and its app is
not disabled; UNAVAILABLE (503) with a reason otherwise. Point the load
balancer's health check at it. app enable ID puts the app back.`,
			Run: request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
				return "app " + c.Args[0] + ": disabled (out of rotation; executors keep running)", cl.Disable(ctx, c.Args[0], true)
			}),
		},
		{
			Name: "app enable", Args: "ID", NArgs: 1, Group: groupApps, Global: ClusterFlags,
			Synopsis: "put a disabled application back in rotation",
			Run: request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
				return "app " + c.Args[0] + ": enabled (back in rotation)", cl.Disable(ctx, c.Args[0], false)
			}),
		},
		{
			Name: "app scale", Args: "ID N", NArgs: 2, Group: groupApps, Global: ClusterFlags,
			Synopsis: "run N instances of an application's process group",
			Flags:    appScale,
		},
		{
			Name: "logs", Args: "ID|EXECUTOR", NArgs: 1, Group: groupApps, Global: ClusterFlags,
			Synopsis: "print an executor's output (stdout and stderr)",
			Help: `ID is an application id (its first placed executor, or -executor) or an
executor id such as 3.web.0. With -f it follows the log until interrupted.`,
			Flags: logs,
		},
		{
			Name: "masters", NArgs: 0, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "list the masters: leader, follower or unreachable, term, quorum",
			Run:      show(listMasters, mastersTable),
		},
		{
			Name: "masters add", Args: "HOST:PORT", NArgs: 1, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "add a master to the group; it becomes a voter once it has caught up",
			Help: `The new master joins as a non-voter, catches up from a snapshot and the log,
and is promoted to voter by the leader once it has. Start it (before or after)
with bin/master -ip HOST -port PORT; a fresh data dir is fine. Add one master at
a time, and list it in gear.cluster.masters on every node afterwards.`,
			Run: show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.MemberChange, error) {
				return cl.AddMaster(ctx, c.Args[0])
			}, memberTable),
		},
		{
			Name: "masters remove", Args: "HOST:PORT", NArgs: 1, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "remove a master (also a dead one) from the group",
			Help: `Refused when fewer reachable voters than a majority of the new group would
remain. Remove one master at a time, and take it out of gear.cluster.masters
on every node afterwards.`,
			Run: show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.MemberChange, error) {
				return cl.RemoveMaster(ctx, c.Args[0])
			}, memberTable),
		},
		{
			Name: "snapshot save", Args: "FILE", NArgs: 1, Group: groupCluster, Global: ClusterFlags,
			Synopsis: "write the masters' replicated state (apps, workers, ids) to FILE",
			Help: `The leader's state as of the call (after every write acknowledged before it).
Bundles are not in it: they stay in the jar store. Restore it into a fresh group
with gear snapshot restore FILE.`,
			Run: snapshotSave,
		},
		{
			Name: "snapshot restore", Args: "FILE", NArgs: 1, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "load a saved state into a fresh group (one without applications)",
			Help: `For disaster recovery: start new masters with empty data dirs (and the same
gear.jarstore.rootpath, so the bundles are found), then restore. Refused when
the group already has applications.`,
			Run: show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.RestoreResult, error) {
				fi, err := os.Stat(c.Args[0])
				if err != nil {
					return cluster.RestoreResult{}, err
				}
				return cl.RestoreSnapshot(ctx, fi.Size(), func() (io.ReadCloser, error) { return os.Open(c.Args[0]) })
			}, func(w io.Writer, r cluster.RestoreResult) {
				fmt.Fprintf(w, "restored %d application(s) and %d worker(s) from a snapshot taken %s (index %d)\n", r.Apps, r.Workers, r.Taken.Format(time.RFC3339), r.Index)
			}),
		},
		{
			Name: "workers", NArgs: 0, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "list the workers, their cores and executors",
			Run:      show(listWorkers, workersTable),
		},
		{
			Name: "workers remove", Args: "ID", NArgs: 1, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "forget a dead worker; its executors are placed elsewhere",
			Help: `Refused while the worker heartbeated within the failover timeout, unless
-force. The leader also forgets workers silent for gear.worker.forget-after.`,
			Flags: workersRemove,
		},
		{
			Name: "workers drain", Args: "ID", NArgs: 1, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "move a worker's executors elsewhere and place nothing new on it",
			Help: `Each executor's replacement starts on another worker, and the old one is
stopped once the replacement is ready, so an app keeps its ready executors
where there is room elsewhere. What is still on the worker after -deadline
is stopped (and placed again where room appears). The worker's /ecv says
it is draining. gear workers eligible ID ends the drain.`,
			Flags: workersDrain,
		},
		{
			Name: "workers eligible", Args: "ID", NArgs: 1, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "end a worker's drain: executors may be placed on it again",
			Run: show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.DrainResult, error) {
				return cl.EligibleWorker(ctx, c.Args[0])
			}, func(w io.Writer, res cluster.DrainResult) {
				fmt.Fprintf(w, "worker %s is eligible again\n", res.ID)
			}),
		},
		{
			Name: "events", NArgs: 0, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "print what happens: submits, kills, scales, executor states, leaders, members",
			Help: `Each event has an id INDEX.SEQ: the raft log index it came from (for leader
and gossip events, the index the master had applied) and its place there.
Every master derives the same ids from the same log, so -f resumes on
another master after a failure without losing or repeating an event.
With -json, one JSON object per line.`,
			Flags: events,
		},
		{
			Name: "jarstore ls", NArgs: 0, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "list the stored bundles and the applications using them",
			Run:      show(jarstoreList, jarstoreTable),
		},
		{
			Name: "jarstore gc", NArgs: 0, Group: groupCluster, Global: ClusterFlags, JSON: true,
			Synopsis: "delete stored bundles no application references",
			Flags:    jarstoreGC,
		},
		{
			Name: "config check", NArgs: 0, Group: groupOther, Global: ConfFlag,
			Synopsis: "check gear.conf: file:line:col errors, \"did you mean\" warnings",
			Run:      configCheck,
		},
		{
			Name: "config show", NArgs: 0, Group: groupOther, Global: ConfFlag, JSON: true,
			Synopsis: "print the effective configuration (after aliases, env and defaults)",
			Run:      configShow,
		},
		{
			Name: "tls gen", Args: "NODE[,NAME...] ...", NArgs: -1, Group: groupOther,
			Synopsis: "make a cluster CA and node certificates for gear.tls (PEM files)",
			Help: `Writes DIR/ca.pem and DIR/ca-key.pem (reused when they exist, so nodes can
be added later), and for every argument DIR/NODE.pem and DIR/NODE-key.pem: a
certificate for server and client use whose names (SANs) are NODE and the
NAMEs after it. Give every address the node is dialled at: the host as in
gear.cluster.masters or -ip, and its IP (gossip dials IPs), e.g.
  gear tls gen -dir conf/tls node1,10.0.0.1 node2,10.0.0.2 node3,10.0.0.3
Copy ca.pem and a node's own pair to each node; keep ca-key.pem elsewhere.`,
			Flags: tlsGen,
		},
		{
			Name: "version", NArgs: 0, Group: groupOther, JSON: true,
			Synopsis: "print gear's version, source revision and Go version",
			Run:      version,
		},
		{
			Name: "help", Args: "[COMMAND]", NArgs: -1, Group: groupOther,
			Synopsis: "list the commands, or explain one",
			Run:      help,
		},
	}
}

// BundleLimits are the unpack limits of gear.bundle.*, the same for the
// CLI's check before an upload and a worker's unpack.
func BundleLimits(cfg *config.Config) bundle.Limits {
	return bundle.Limits{MaxBytes: cfg.Bundle.MaxUnpackedSize, MaxExpansion: cfg.Bundle.MaxExpansion}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// leaderWait bounds how long a command waits for the masters to elect a
// leader (a 503 answer or a timeout) before it gives up.
const leaderWait = 10 * time.Second

// client builds an API client from -master/-token, the env, or gear.conf.
// Refused connections and DNS errors fail at once; only a master without
// a leader (or a timeout) is waited for, at most leaderWait, with the wait
// printed on stderr.
func client(env Env, g Global) (*cluster.Client, error) {
	masters := g.MasterList()
	source := "-master flag"
	token := g.Token
	if token == "" {
		token = env.Getenv("GEAR_TOKEN")
	}
	ca := g.CA
	if ca == "" {
		ca = env.Getenv("GEAR_CA")
	}
	var cert, key string
	if len(masters) == 0 || token == "" || ca == "" {
		path := confPath(env, g.Conf)
		cfg, rep, err := loadConfigReport(env, g.Conf, nil)
		if err != nil {
			return nil, err
		}
		if len(masters) == 0 {
			masters = cfg.Masters
			source = mastersSource(rep, path)
		}
		if token == "" {
			token = cfg.Token
		}
		if ca == "" {
			ca = cfg.TLS.CA
		}
		// On a node with gear.tls set, the CLI presents the node's
		// certificate too; elsewhere the token authenticates it.
		cert, key = cfg.TLS.Cert, cfg.TLS.Key
	}
	for _, m := range masters {
		if _, _, err := config.ParseHostPort(m); err != nil {
			return nil, Usagef("-master: %v", err)
		}
	}
	c := cluster.NewClient(masters, token)
	c.Source = source
	c.Retry = leaderWait // ride out an election
	c.OnWait = waitPrinter(env.Stderr)
	if ca != "" {
		tc, err := tlsconf.LoadClient(ca, cert, key)
		if err != nil {
			return nil, Usagef("-ca: %v", err)
		}
		c.UseTLS(tc)
	}
	return c, nil
}

// mastersSource says where gear.cluster.masters came from, for the error
// when none answers.
func mastersSource(rep *config.Report, path string) string {
	if rep != nil {
		if w, ok := rep.Origin["gear.cluster.masters"]; ok {
			if strings.HasPrefix(w, "env ") {
				return w
			}
			return "gear.cluster.masters at " + w
		}
	}
	if rep != nil && len(rep.Sources) > 0 {
		return "the default of gear.cluster.masters (" + path + " does not set it; use -master, GEAR_MASTERS or gear.cluster.masters)"
	}
	return "the default of gear.cluster.masters (no " + path + "; use -master, GEAR_MASTERS or gear.cluster.masters)"
}

// waitPrinter prints "waiting for a leader… N s" on w at most once a
// second while a client waits for an election.
func waitPrinter(w io.Writer) func(waited, limit time.Duration, why string) {
	printed := -1
	return func(waited, limit time.Duration, why string) {
		sec := int(waited / time.Second)
		switch {
		case printed < 0:
			fmt.Fprintf(w, "gear: no leader yet (%s); waiting at most %s\n", hocon.Escape(why), limit)
		case sec != printed:
			fmt.Fprintf(w, "gear: waiting for a leader… %d s\n", sec)
		}
		printed = sec
	}
}

func configCheck(_ context.Context, c *Call) error {
	path := confPath(c.Env, c.Global.Conf)
	if _, err := loadConfig(c.Env, path, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "%s: ok\n", path)
	return nil
}

func configShow(_ context.Context, c *Call) error {
	cfg, err := c.LoadConfig(nil)
	if err != nil {
		return err
	}
	b, err := cfg.JSON()
	if err != nil {
		return err
	}
	if c.JSON {
		_, err = fmt.Fprintln(c.Stdout, string(b))
		return err
	}
	var flat map[string]any
	if err := json.Unmarshal(b, &flat); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(flat)) {
		v, _ := json.Marshal(flat[k])
		fmt.Fprintf(c.Stdout, "%s = %s\n", k, v)
	}
	return nil
}

// help prints `gear help`, `gear help CMD` or the subcommands of a group.
func help(_ context.Context, c *Call) error {
	if len(c.Args) == 0 {
		fmt.Fprint(c.Stdout, TopHelp(c.commands))
		return nil
	}
	name := strings.Join(c.Args, " ")
	if cmd := lookupName(c.commands, name); cmd != nil {
		writeHelp(c.Stdout, c.commands, cmd)
		return nil
	}
	if subs := under(c.commands, name); len(subs) > 0 {
		writeGroupHelp(c.Stdout, name, subs)
		return nil
	}
	return Usagef("help: unknown command %q", name)
}
