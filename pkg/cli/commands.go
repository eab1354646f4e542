package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
)

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// client builds an API client from -master/-token, the env, or gear.conf.
func client(env Env, g global) (*cluster.Client, error) {
	masters := splitList(g.masters)
	token := g.token
	if token == "" {
		token = env.Getenv("GEAR_TOKEN")
	}
	if len(masters) == 0 || token == "" {
		cfg, err := loadConfig(env, g.conf, nil)
		if err != nil {
			return nil, err
		}
		if len(masters) == 0 {
			masters = cfg.Masters
		}
		if token == "" {
			token = cfg.Token
		}
	}
	for _, m := range masters {
		if _, _, err := config.ParseHostPort(m); err != nil {
			return nil, fmt.Errorf("-master: %w", err)
		}
	}
	c := cluster.NewClient(masters, token)
	c.Retry = 10 * time.Second // ride out an election
	return c, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runApp(ctx context.Context, env Env, g global, args []string) error {
	if len(args) == 0 {
		return usagef("app: want submit, list, info, kill, restart or scale")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "submit":
		return appSubmit(ctx, env, g, args)
	case "list":
		return appList(ctx, env, g, args)
	case "info":
		return appInfo(ctx, env, g, args)
	case "kill":
		return appSimple(ctx, env, g, "kill", args, func(c *cluster.Client, id string) error { return c.Kill(ctx, id) })
	case "restart":
		return appRestart(ctx, env, g, args)
	case "scale":
		return appScale(ctx, env, g, args)
	}
	return usagef("app: unknown subcommand %q (want submit, list, info, kill, restart or scale)", sub)
}

func appSubmit(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("app submit", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	name := fs.String("name", "", "application name (default: the manifest's name or the file name)")
	executors := fs.Int("executors", 0, "instances of every process group (default: the manifest's)")
	mainClass := fs.String("main", "", "main class of a .jar (default: its manifest's Main-Class)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	pos, extra, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("app submit: want exactly one BUNDLE (a .jar, .tar.gz or .zip), got %d", len(pos))
	}
	path := pos[0]
	man, kind, err := bundle.Inspect(path, *mainClass, extra)
	if err != nil {
		return err
	}
	procs := toProcesses(man)
	if *executors > 0 {
		for i := range procs {
			procs[i].Instances = *executors
		}
	}
	appName := *name
	if appName == "" {
		appName = man.Name
	}
	if appName == "" {
		appName = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), ".tar")
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	showBar := !*quiet && isTerminal(env.Stderr)
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
	b, err := c.UploadBundle(ctx, filepath.Base(path), st.Size(), open)
	if err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	if showBar {
		fmt.Fprintln(env.Stderr)
	}
	b.Kind = cluster.BundleKind(kind.String())
	// The arguments are already part of each process's command (bundle.Inspect);
	// they are recorded with the app for `app info`.
	id, err := c.Submit(ctx, cluster.SubmitRequest{Name: appName, Bundle: b, Processes: procs, Args: extra})
	if err != nil {
		return fmt.Errorf("submit %s: %w", path, err)
	}
	fmt.Fprintln(env.Stdout, id)
	return nil
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

// toProcesses converts a bundle manifest into the API's process groups.
func toProcesses(m *bundle.Manifest) []cluster.Process {
	var out []cluster.Process
	for _, p := range m.Processes {
		out = append(out, cluster.Process{
			Name: p.Name, Command: p.Command, Instances: p.Instances, CPUs: p.CPUs, Shared: p.Shared,
			Restart: p.Restart, Env: p.Env, Ports: p.Ports, StopTimeout: p.StopTimeout, PreStop: p.PreStop,
			MaxAge: p.MaxAge, MaxRSS: p.MaxRSS, MinUptime: p.MinUptime, MaxRestarts: p.MaxRestarts,
			RestartWindow: p.RestartWindow,
		})
	}
	return out
}

func jsonFlag(fs *flag.FlagSet) *bool { return fs.Bool("json", false, "print JSON") }

func appList(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("app list", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	asJSON := jsonFlag(fs)
	if _, _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	apps, err := c.Apps(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, apps)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tEXECUTORS\tSUBMITTED")
	for _, a := range apps {
		running := 0
		for _, e := range a.Executors {
			if e.State == cluster.Running {
				running++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d running\t%s\n", a.ID, a.Name, a.State, running, len(a.Executors), a.Submitted.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func appInfo(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("app info", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	asJSON := jsonFlag(fs)
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("app info: want one application ID")
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	app, err := c.App(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, app)
	}
	fmt.Fprintf(env.Stdout, "app %s %q: %s (bundle %s, %d bytes)\n", app.ID, app.Name, app.State, app.Bundle.Digest, app.Bundle.Size)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXECUTOR\tSTATE\tWORKER\tPID\tCPUS\tRESTARTS\tLAST EXIT / ERROR")
	for _, e := range app.Executors {
		last := e.LastExit
		if e.LastError != "" {
			last = e.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", e.ID, e.State, e.Worker, e.PID, ints(e.CPUs), e.Restarts, last)
	}
	return tw.Flush()
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func appSimple(ctx context.Context, env Env, g global, verb string, args []string, do func(*cluster.Client, string) error) error {
	if len(args) != 1 {
		return usagef("app %s: want one application ID", verb)
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	if err := do(c, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "app %s: %s requested\n", args[0], verb)
	return nil
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

func appRestart(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("app restart", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	vars := envFlags{}
	fs.Var(vars, "env", "KEY=VALUE for the new executors (repeatable)")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("app restart: want one application ID")
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	if err := c.Restart(ctx, pos[0], vars); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "app %s: rolling restart started (one executor at a time)\n", pos[0])
	return nil
}

func appScale(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("app scale", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	process := fs.String("process", "", "process group to scale (needed when the app has several)")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("app scale: want ID and N")
	}
	var n int
	if _, err := fmt.Sscanf(pos[1], "%d", &n); err != nil || n < 0 {
		return usagef("app scale: N must be a count >= 0, got %q", pos[1])
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	if err := c.Scale(ctx, pos[0], cluster.ScaleRequest{Process: *process, Instances: n}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "app %s: scaled to %d\n", pos[0], n)
	return nil
}

func runMasters(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("masters", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	asJSON := jsonFlag(fs)
	if _, _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	ms, err := c.MasterList(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, ms)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MASTER\tSTATE\tTERM\tLEADER\tLAST CONTACT\tQUORUM\tGOSSIP")
	for _, m := range ms {
		lc := "-"
		if !m.LastContact.IsZero() {
			lc = time.Since(m.LastContact).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%t\t%s\n", m.Addr, m.State, m.Term, m.Leader, lc, m.Quorum, gossipState(m.Gossip, m.GossipSince))
	}
	return tw.Flush()
}

func runWorkers(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("workers", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	asJSON := jsonFlag(fs)
	if _, _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	ws, err := c.Workers(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, ws)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tADDR\tALIVE\tCPUS\tFREE\tEXECUTORS\tGOSSIP")
	for _, w := range ws {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%d\t%s\n", w.ID, w.Addr, w.Alive, ints(w.CPUs), ints(w.FreeCPUs), len(w.Executors), gossipState(w.Gossip, w.GossipSince))
	}
	return tw.Flush()
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

func runLogs(ctx context.Context, env Env, g global, args []string) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	exec := fs.String("executor", "", "executor id (default: the app's first placed executor)")
	follow := fs.Bool("f", false, "follow the log")
	lines := fs.Int("lines", 100, "lines of history to show")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("logs: want an application ID (or an executor id like 3.web.0)")
	}
	id := pos[0]
	if parts := strings.Split(id, "."); len(parts) == 3 && *exec == "" {
		id, *exec = parts[0], pos[0]
	}
	c, err := client(env, g)
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
	resp, err := c.Stream(ctx, cluster.Request{Method: "GET", Path: "/api/v1/apps/" + id + "/logs", Query: q})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(env.Stdout, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func runConfig(env Env, g global, args []string) error {
	if len(args) == 0 {
		return usagef("config: want check or show")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	conf := fs.String("conf", g.conf, "gear.conf to read")
	asJSON := jsonFlag(fs)
	if _, _, err := parseFlags(fs, args); err != nil {
		return err
	}
	switch sub {
	case "check":
		path := confPath(env, *conf)
		if _, err := loadConfig(env, path, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: ok\n", path)
		return nil
	case "show":
		cfg, err := loadConfig(env, *conf, nil)
		if err != nil {
			return err
		}
		b, err := cfg.JSON()
		if err != nil {
			return err
		}
		if *asJSON {
			_, err = fmt.Fprintln(env.Stdout, string(b))
			return err
		}
		var flat map[string]any
		_ = json.Unmarshal(b, &flat)
		keys := make([]string, 0, len(flat))
		for k := range flat {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := json.Marshal(flat[k])
			fmt.Fprintf(env.Stdout, "%s = %s\n", k, v)
		}
		return nil
	}
	return usagef("config: unknown subcommand %q (want check or show)", sub)
}

func runJarstore(ctx context.Context, env Env, g global, args []string) error {
	if len(args) == 0 {
		return usagef("jarstore: want ls or gc")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("jarstore "+sub, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	asJSON := jsonFlag(fs)
	grace := fs.String("grace", "", "delete unreferenced bundles older than this (default: gear.jarstore.gc-grace)")
	if _, _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := client(env, g)
	if err != nil {
		return err
	}
	switch sub {
	case "ls":
		var out []struct {
			Digest  string    `json:"digest"`
			Size    int64     `json:"size"`
			ModTime time.Time `json:"mod_time"`
			Apps    []string  `json:"apps"`
		}
		if err := c.Do(ctx, cluster.Request{Method: "GET", Path: "/api/v1/bundles"}, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.Stdout, out)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DIGEST\tSIZE\tSTORED\tAPPS")
		for _, o := range out {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", o.Digest, o.Size, o.ModTime.Local().Format(time.DateTime), strings.Join(o.Apps, ","))
		}
		return tw.Flush()
	case "gc":
		q := map[string][]string{}
		if *grace != "" {
			q["grace"] = []string{*grace}
		}
		var out struct {
			Deleted []string `json:"deleted"`
		}
		if err := c.Do(ctx, cluster.Request{Method: "POST", Path: "/api/v1/jarstore/gc", Query: q}, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.Stdout, out)
		}
		fmt.Fprintf(env.Stdout, "deleted %d unreferenced bundle(s)\n", len(out.Deleted))
		for _, d := range out.Deleted {
			fmt.Fprintln(env.Stdout, "  "+d)
		}
		return nil
	}
	return usagef("jarstore: unknown subcommand %q (want ls or gc)", sub)
}
