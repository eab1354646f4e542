package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

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

func appSubmit(fs *flag.FlagSet) Action {
	name := fs.String("name", "", "application `name` (default: the manifest's name or the file name)")
	executors := fs.Int("executors", 0, "instances of every process group (default: the manifest's)")
	mainClass := fs.String("main", "", "main `class` of a .jar (default: its manifest's Main-Class)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	return func(ctx context.Context, c *Call) error {
		path := c.Args[0]
		cl, req, err := uploadBundle(ctx, c, path, *name, *executors, *mainClass, *quiet)
		if err != nil {
			return err
		}
		id, err := cl.Submit(ctx, req)
		if err != nil {
			return fmt.Errorf("submit %s: %w", path, err)
		}
		fmt.Fprintln(c.Stdout, id)
		return nil
	}
}

// uploadBundle checks the bundle at path as the masters will, uploads it,
// and returns the request that submits it (or updates an app to it).
func uploadBundle(ctx context.Context, c *Call, path, name string, executors int, mainClass string, quiet bool) (*cluster.Client, cluster.SubmitRequest, error) {
	var req cluster.SubmitRequest
	cfg, err := c.LoadConfig(nil)
	if err != nil {
		return nil, req, err
	}
	// The workers refuse what breaks these limits or holds unsafe
	// entries: refuse it here, before the upload.
	man, kind, err := bundle.InspectLimits(path, mainClass, c.Rest, BundleLimits(cfg))
	if err != nil {
		return nil, req, err
	}
	procs := man.Processes
	if executors > 0 {
		for i := range procs {
			procs[i].Instances = executors
		}
	}
	// The masters run the same check on submit: refuse here what they
	// would refuse, before the upload.
	if err := cluster.ValidateProcesses(procs); err != nil {
		return nil, req, fmt.Errorf("%s: %w", path, err)
	}
	appName := name
	if appName == "" {
		appName = man.Name
	}
	if appName == "" {
		appName = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), ".tar")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, req, err
	}
	cl, err := c.Client()
	if err != nil {
		return nil, req, err
	}
	showBar := !quiet && isTerminal(c.Stderr)
	open := func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		if !showBar {
			return f, nil
		}
		bar := progressbar.DefaultBytes(st.Size(), "uploading "+filepath.Base(path))
		r := progressbar.NewReader(f, bar)
		return readCloser{Reader: &r, Closer: f}, nil
	}
	b, err := cl.UploadBundle(ctx, filepath.Base(path), st.Size(), open)
	if err != nil {
		return nil, req, fmt.Errorf("upload %s: %w", path, err)
	}
	if showBar {
		fmt.Fprintln(c.Stderr)
	}
	b.Kind = kind.BundleKind()
	// The arguments are already part of each process's command (bundle.Inspect);
	// they are recorded with the app for `app info`.
	return cl, cluster.SubmitRequest{Name: appName, Bundle: b, Processes: procs, Args: c.Rest}, nil
}

func appUpdate(fs *flag.FlagSet) Action {
	mainClass := fs.String("main", "", "main `class` of a .jar (default: its manifest's Main-Class)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	return func(ctx context.Context, c *Call) error {
		id, path := c.Args[0], c.Args[1]
		cl, req, err := uploadBundle(ctx, c, path, "", 0, *mainClass, *quiet)
		if err != nil {
			return err
		}
		a, err := cl.Update(ctx, id, req)
		if err != nil {
			return fmt.Errorf("update app %s to %s: %w", id, path, err)
		}
		fmt.Fprintf(c.Stdout, "app %s rolls to version %d (bundle %s), one executor at a time; see gear app history %s\n", a.ID, a.Version, a.Bundle.Digest, a.ID)
		return nil
	}
}

func appRollback(fs *flag.FlagSet) Action {
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) (*cluster.App, error) {
		if len(c.Args) < 1 || len(c.Args) > 2 {
			return nil, fmt.Errorf("usage: gear app rollback ID [VERSION]")
		}
		v := 0
		if len(c.Args) > 1 {
			n, err := strconv.Atoi(c.Args[1])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("VERSION %q is not a version number (see gear app history %s)", c.Args[1], c.Args[0])
			}
			v = n
		}
		return cl.Rollback(ctx, c.Args[0], v)
	}, func(w io.Writer, a *cluster.App) {
		fmt.Fprintf(w, "app %s rolls back to version %d (bundle %s), one executor at a time\n", a.ID, a.Version, a.Bundle.Digest)
	})
}

func appHistory(fs *flag.FlagSet) Action {
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) ([]cluster.AppVersion, error) {
		a, err := cl.App(ctx, c.Args[0])
		if err != nil {
			return nil, err
		}
		if len(a.Versions) == 0 {
			return []cluster.AppVersion{{Version: 1, Bundle: a.Bundle, Processes: a.Processes, Created: a.Submitted}}, nil
		}
		return a.Versions, nil
	}, func(w io.Writer, vs []cluster.AppVersion) {
		fmt.Fprintln(w, "VERSION\tCREATED\tBUNDLE\tDIGEST\tSTATUS")
		for _, v := range vs {
			status := ""
			if !v.RolledBack.IsZero() {
				status = "rolled back " + v.RolledBack.Local().Format(time.DateTime) + ": " + v.Reason
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", v.Version, v.Created.Local().Format(time.DateTime), v.Bundle.Name, v.Bundle.Digest, status)
		}
	})
}

type readCloser struct {
	io.Reader
	io.Closer
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func appTable(w io.Writer, apps []cluster.App) {
	fmt.Fprintln(w, "ID\tNAME\tSTATE\tEXECUTORS\tSUBMITTED")
	for _, a := range apps {
		running := 0
		for _, e := range a.Executors {
			if e.State == cluster.Running {
				running++
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d running\t%s\n", a.ID, a.Name, a.State, running, len(a.Executors), a.Submitted.Local().Format(time.DateTime))
	}
}

func appInfoTable(w io.Writer, app *cluster.App) {
	disabled := ""
	if app.Disabled {
		disabled = ", disabled: out of rotation"
	}
	fmt.Fprintf(w, "app %s %q: %s (bundle %s, %d bytes%s)\n", app.ID, app.Name, app.State, app.Bundle.Digest, app.Bundle.Size, disabled)
	if app.Version > 0 {
		moved := 0
		for _, e := range app.Executors {
			if e.Version == app.Version {
				moved++
			}
		}
		fmt.Fprintf(w, "version %d (%d of %d executors on it; gear app history %s)\n", app.Version, moved, len(app.Executors), app.ID)
	}
	fmt.Fprintln(w, "EXECUTOR\tSTATE\tHEALTH\tWORKER\tPID\tCPUS\tRESTARTS\tLAST EXIT / ERROR")
	for _, e := range app.Executors {
		last := e.LastExit
		if e.LastError != "" {
			last = e.LastError
		}
		health := e.Health
		if health == "" {
			health = cluster.HealthUnknown
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", e.ID, e.State, health, e.Worker, e.PID, cluster.FormatInts(e.CPUs), e.Restarts, last)
	}
	for _, e := range app.Executors {
		if r := e.Replacement; r != nil {
			fmt.Fprintf(w, "replacing %s: its worker drains; the copy on worker %s is %s\n", e.ID, r.Worker, r.State)
		}
		for i, r := range e.Reschedules {
			fmt.Fprintf(w, "rescheduled %s: attempt %d at %s, off worker %s (%s); started again after %s\n", e.ID, i+1,
				r.Time.Local().Format(time.DateTime), r.From, r.Reason, r.NotBefore.Local().Format(time.TimeOnly))
		}
	}
}

type envFlags map[string]string

func (e envFlags) String() string { return "" }
func (e envFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	e[k] = v
	return nil
}

func appRestart(fs *flag.FlagSet) Action {
	vars := envFlags{}
	fs.Var(vars, "env", "`KEY=VALUE` for the new executors (repeatable)")
	return request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
		return "app " + c.Args[0] + ": rolling restart started (one executor at a time)", cl.Restart(ctx, c.Args[0], vars)
	})
}

func appScale(fs *flag.FlagSet) Action {
	process := fs.String("process", "", "process group to scale (needed when the app has several)")
	return func(ctx context.Context, c *Call) error {
		n, err := strconv.Atoi(c.Args[1])
		if err != nil || n < 0 {
			return Usagef("app scale: N must be a count >= 0, got %q", c.Args[1])
		}
		return request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
			return fmt.Sprintf("app %s: scaled to %d", c.Args[0], n), cl.Scale(ctx, c.Args[0], cluster.ScaleRequest{Process: *process, Instances: n})
		})(ctx, c)
	}
}

func listApps(ctx context.Context, cl *cluster.Client, _ *Call) ([]cluster.App, error) {
	return cl.Apps(ctx)
}

func listMasters(ctx context.Context, cl *cluster.Client, _ *Call) ([]cluster.Master, error) {
	return cl.MasterList(ctx)
}

func listWorkers(ctx context.Context, cl *cluster.Client, _ *Call) ([]cluster.Worker, error) {
	return cl.Workers(ctx)
}

// snapshotSave writes the leader's state to a temporary file next to FILE
// and renames it into place once complete.
func snapshotSave(ctx context.Context, c *Call) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	path := c.Args[0]
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := cl.SaveSnapshot(ctx, tmp); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return err
	}
	var head struct {
		Index uint64    `json:"index"`
		Taken time.Time `json:"taken"`
		State struct {
			Apps    map[string]json.RawMessage `json:"apps"`
			Workers map[string]json.RawMessage `json:"workers"`
		} `json:"state"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("the masters' answer is not a snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "saved %d application(s) and %d worker(s) (index %d) to %s\n", len(head.State.Apps), len(head.State.Workers), head.Index, path)
	return nil
}

// memberTable prints the group after a masters add or remove.
func memberTable(w io.Writer, r cluster.MemberChange) {
	switch r.Suffrage {
	case "removed":
		fmt.Fprintf(w, "removed master %s\n", r.Addr)
	case "voter":
		fmt.Fprintf(w, "master %s is a voter\n", r.Addr)
	default:
		fmt.Fprintf(w, "master %s added as a non-voter\n", r.Addr)
	}
	if r.Message != "" {
		fmt.Fprintln(w, r.Message)
	}
	fmt.Fprintf(w, "voters: %s\n", strings.Join(r.Voters, ", "))
	if len(r.Nonvoters) > 0 {
		fmt.Fprintf(w, "non-voters (catching up): %s\n", strings.Join(r.Nonvoters, ", "))
	}
}

func mastersTable(w io.Writer, ms []cluster.Master) {
	fmt.Fprintln(w, "MASTER\tSTATE\tTERM\tLEADER\tLAST CONTACT\tQUORUM\tCOMMIT\tGOSSIP")
	for _, m := range ms {
		lc := "-"
		if !m.LastContact.IsZero() {
			lc = time.Since(m.LastContact).Round(time.Millisecond).String() + " ago"
		}
		commit := "-"
		switch {
		case !m.CommitStalledSince.IsZero():
			commit = fmt.Sprintf("STALLED at %d of %d since %s (%s ago)", m.CommitIndex, m.LastIndex,
				m.CommitStalledSince.Format(time.RFC3339), time.Since(m.CommitStalledSince).Round(time.Second))
		case m.State != "unreachable":
			commit = strconv.FormatUint(m.CommitIndex, 10)
		}
		state := m.State
		if m.Suffrage == "nonvoter" {
			state += " (non-voter, catching up)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%t\t%s\t%s\n", m.Addr, state, m.Term, m.Leader, lc, m.Quorum, commit, gossipState(m.Gossip, m.GossipSince))
	}
	for _, m := range ms {
		if m.Error != "" && m.State != "unreachable" { // e.g. its disk is full
			fmt.Fprintf(w, "%s: %s\n", m.Addr, m.Error)
		}
	}
}

func workersTable(w io.Writer, ws []cluster.Worker) {
	fmt.Fprintln(w, "WORKER\tADDR\tALIVE\tGOSSIP\tCPUS\tFREE\tEXECUTORS")
	for _, x := range ws {
		id := x.ID
		if x.Draining {
			id += " (draining)"
		}
		fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\t%s\t%d\n", id, x.Addr, x.Alive, gossipState(x.Gossip, x.GossipSince), cluster.FormatInts(x.CPUs), cluster.FormatInts(x.FreeCPUs), len(x.Executors))
	}
}

// gossipState shows a member's gossip state and how long it has held it.
func gossipState(state string, since time.Time) string {
	if state == "" {
		return "-"
	}
	if since.IsZero() {
		return state
	}
	return fmt.Sprintf("%s %s", state, time.Since(since).Round(time.Second))
}

func workersRemove(fs *flag.FlagSet) Action {
	force := fs.Bool("force", false, "remove it even if it heartbeated within the failover timeout (its executors may then run twice)")
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.RemoveWorkerResult, error) {
		return cl.RemoveWorker(ctx, c.Args[0], *force)
	}, func(w io.Writer, res cluster.RemoveWorkerResult) {
		fmt.Fprintf(w, "removed worker %s; %d executor(s) are placed elsewhere\n", res.ID, len(res.Unplaced))
		for _, e := range res.Unplaced {
			fmt.Fprintln(w, "  "+e)
		}
	})
}

func workersDrain(fs *flag.FlagSet) Action {
	deadline := fs.Duration("deadline", 5*time.Minute, "how long executors may take to move; what remains then is stopped")
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.DrainResult, error) {
		return cl.DrainWorker(ctx, c.Args[0], *deadline)
	}, func(w io.Writer, res cluster.DrainResult) {
		fmt.Fprintf(w, "worker %s draining until %s: %d executor(s) move elsewhere\n", res.ID, res.DrainDeadline.Local().Format(time.DateTime), len(res.Executors))
		for _, e := range res.Executors {
			fmt.Fprintln(w, "  "+e)
		}
	})
}

func logs(fs *flag.FlagSet) Action {
	exec := fs.String("executor", "", "show executor `EXEC`, e.g. 3.web.0 (default: the app's first placed executor)")
	follow := fs.Bool("f", false, "follow the log")
	lines := fs.Int("lines", 100, "lines of history to show")
	return func(ctx context.Context, c *Call) error {
		id := c.Args[0]
		if parts := strings.Split(id, "."); len(parts) == 3 && *exec == "" {
			id, *exec = parts[0], c.Args[0]
		}
		cl, err := c.Client()
		if err != nil {
			return err
		}
		q := map[string][]string{"lines": {fmt.Sprint(*lines)}}
		if *exec != "" {
			q["executor"] = []string{*exec}
		}
		if *follow {
			q["follow"] = []string{"1"}
		}
		resp, err := cl.Stream(ctx, cluster.Request{Method: "GET", Path: "/api/v1/apps/" + id + "/logs", Query: q})
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(c.Stdout, resp.Body)
		if ctx.Err() != nil {
			return context.Cause(ctx) // interrupted: Main exits 128+signal
		}
		return err
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

type storedBundle struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	Apps    []string  `json:"apps"`
}

func jarstoreList(ctx context.Context, cl *cluster.Client, _ *Call) ([]storedBundle, error) {
	var out []storedBundle
	err := cl.Do(ctx, cluster.Request{Method: "GET", Path: "/api/v1/bundles"}, &out)
	return out, err
}

func jarstoreTable(w io.Writer, bs []storedBundle) {
	fmt.Fprintln(w, "DIGEST\tSIZE\tSTORED\tAPPS")
	for _, o := range bs {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", o.Digest, o.Size, o.ModTime.Local().Format(time.DateTime), strings.Join(o.Apps, ","))
	}
}

type gcResult struct {
	Deleted      []string `json:"deleted"`
	TempsDeleted []struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	} `json:"temps_deleted"`
}

func jarstoreGC(fs *flag.FlagSet) Action {
	grace := fs.String("grace", "", "delete unreferenced bundles, and temporary files of interrupted uploads, older than this `duration` (default: gear.jarstore.gc-grace)")
	return show(func(ctx context.Context, cl *cluster.Client, _ *Call) (gcResult, error) {
		q := map[string][]string{}
		if *grace != "" {
			q["grace"] = []string{*grace}
		}
		var out gcResult
		err := cl.Do(ctx, cluster.Request{Method: "POST", Path: "/api/v1/jarstore/gc", Query: q}, &out)
		return out, err
	}, func(w io.Writer, r gcResult) {
		fmt.Fprintf(w, "deleted %d unreferenced bundle(s)\n", len(r.Deleted))
		for _, d := range r.Deleted {
			fmt.Fprintln(w, "  "+d)
		}
		if n := len(r.TempsDeleted); n > 0 {
			var size int64
			for _, t := range r.TempsDeleted {
				size += t.Size
			}
			fmt.Fprintf(w, "deleted %d temporary file(s) of interrupted uploads (%d bytes)\n", n, size)
		}
	})
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

func tlsGen(fs *flag.FlagSet) Action {
	dir := fs.String("dir", "tls", "write the files into this `dir`")
	days := fs.Int("days", 825, "certificates are valid for `N` days")
	return func(ctx context.Context, c *Call) error {
		if len(c.Args) == 0 {
			return Usagef("name at least one node: NODE[,NAME...], e.g. node1,10.0.0.1")
		}
		if *days < 1 {
			return Usagef("-days %d: want at least 1", *days)
		}
		validity := time.Duration(*days) * 24 * time.Hour
		type node struct {
			name string
			sans []string
		}
		var nodes []node
		for _, a := range c.Args {
			names := splitList(a)
			if len(names) == 0 || names[0] == "ca" || strings.ContainsAny(names[0], "/\\") || strings.HasPrefix(names[0], ".") {
				return Usagef("%q: want NODE[,NAME...] where NODE is a host name used for the file names (not \"ca\", no /)", a)
			}
			nodes = append(nodes, node{names[0], names})
		}
		ca, created, err := tlsconf.OpenOrCreateCA(*dir, "ca", validity)
		if err != nil {
			return err
		}
		verb := "reused"
		if created {
			verb = "created"
		}
		fmt.Fprintf(c.Stdout, "%s CA %s (key %s: keep it off the nodes)\n", verb, ca.File, ca.KeyFile)
		for _, n := range nodes {
			p, err := ca.Issue(*dir, n.name, n.sans, validity)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.Stdout, "%s: %s %s (names %s)\n", n.name, p.Cert, p.Key, strings.Join(n.sans, ", "))
		}
		fmt.Fprintf(c.Stdout, "\non each node, in gear.conf (with that node's files):\n  gear.tls { cert = %q, key = %q, ca = %q }\nfor the CLI: gear -ca %s ... or GEAR_CA=%s\n",
			filepath.Join(*dir, nodes[0].name+".pem"), filepath.Join(*dir, nodes[0].name+"-key.pem"), ca.File, ca.File, ca.File)
		return nil
	}
}
