package main

// The daemon commands: `gear master`, `gear worker` and `gear local`. They
// turn gear.conf, environment and flags into master.Options and
// worker.Options and run the daemons; they are registered into pkg/cli's
// command registry so that help lists them with the operator commands.

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gear-run/gear/master"
	"github.com/gear-run/gear/pkg/cli"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/procs"
	"github.com/gear-run/gear/pkg/tlsconf"
	"github.com/gear-run/gear/worker"
)

// daemonCommands are the daemons, registered with the operator commands.
func daemonCommands() []cli.Command {
	return []cli.Command{
		{
			Name: "master", NArgs: 0, Group: "daemons", Daemon: true, Global: cli.ConfFlag,
			Synopsis: "run a master (bin/master): API, consensus, gossip and jar store on one port",
			Help: `The master binds -ip:-port, which must be one of gear.cluster.masters (or be
started with -join to be added to a running group). Its data dir keeps the raft
log, membership and (without gear.jarstore.rootpath) the bundles; restarting it
needs no extra flags. A fresh data dir never bootstraps a group of its own while
a listed master has one: it waits to be added (gear masters add). SIGINT or
SIGTERM stops it.`,
			Flags: runMaster,
		},
		{
			Name: "worker", NArgs: 0, Group: "daemons", Daemon: true, Global: cli.MasterFlag | cli.ConfFlag,
			Synopsis: "run a worker (bin/worker): runs executors pinned to cores, heartbeats the leader",
			Help: `The worker finds the masters in -master or gear.cluster.masters. SIGHUP restarts
its executors one at a time; SIGINT or SIGTERM stops it, and its executors as
gear.worker.on-exit says.`,
			Flags: runWorker,
		},
		{
			Name: "local", NArgs: 0, Group: "daemons", Daemon: true, Global: cli.ConfFlag,
			Synopsis: "run one master and N workers in one process (bin/local)",
			Help: `The master listens on -port or the first entry of gear.cluster.masters; the
workers take free ports and share this machine's cores between them. Data goes
under -datadir. Ctrl-C stops them all.`,
			Flags: runLocal,
		},
	}
}

// daemonFlags are the flags bin/master and bin/worker share.
type daemonFlags struct {
	ip, datadir string
	port        int
}

func (d *daemonFlags) register(fs *flag.FlagSet, defaultPortHelp string) {
	fs.StringVar(&d.ip, "ip", "", "`host` address to bind and advertise (default: gear.hostname)")
	fs.IntVar(&d.port, "port", 0, "the one `port` for API, raft and gossip ("+defaultPortHelp+")")
	fs.StringVar(&d.datadir, "datadir", "", "keep data in this `dir` (default: <install>/data/<role>-<ip>-<port>)")
}

func (d *daemonFlags) overrides() map[string]any {
	o := map[string]any{}
	if d.ip != "" {
		o["gear.hostname"] = d.ip
	}
	if d.datadir != "" {
		o["gear.datadir"] = d.datadir
	}
	return o
}

func gossipKey(cfg *config.Config) ([]byte, error) {
	if cfg.Gossip.Key == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(cfg.Gossip.Key)
	if err != nil {
		return nil, fmt.Errorf("gear.gossip.key is not base64: %w", err)
	}
	return k, nil
}

// nodeTLS loads gear.tls.*; nil when TLS is off. TLS covers the port's
// TCP streams only: gossip's UDP packets need gear.gossip.key, so TLS
// without it is said at start.
func nodeTLS(cfg *config.Config, log *slog.Logger) (*tlsconf.Node, error) {
	n, err := tlsconf.LoadNode(tlsconf.Files{Cert: cfg.TLS.Cert, Key: cfg.TLS.Key, CA: cfg.TLS.CA})
	if n != nil && cfg.Gossip.Key == "" {
		log.Warn("gear.tls is set but gear.gossip.key is not: gossip's UDP packets (membership and failure verdicts) travel unencrypted; set gear.gossip.key (head -c 32 /dev/urandom | base64) on every node")
	}
	return n, err
}

func masterOptions(cfg *config.Config, ip string, port int, dataDir string, log *slog.Logger) (master.Options, error) {
	key, err := gossipKey(cfg)
	if err != nil {
		return master.Options{}, err
	}
	tc, err := nodeTLS(cfg, log)
	if err != nil {
		return master.Options{}, err
	}
	return master.Options{
		IP: ip, Port: port, Masters: cfg.Masters, DataDir: dataDir, Token: cfg.Token, MetricsOpen: cfg.Metrics.Open,
		BundleLimits:    cli.BundleLimits(cfg),
		FailoverTimeout: cfg.FailoverTimeout, JarRoot: cfg.JarStore.RootPath,
		MaxBundleSize: cfg.JarStore.MaxBundleSize, GCGrace: cfg.JarStore.GCGrace, ForgetAfter: cfg.Worker.ForgetAfter,
		RaftSegmentSize: cfg.Raft.SegmentSize,
		GossipKey:       key, GossipLabel: cfg.Gossip.ClusterLabel, Logger: log, TLS: tc,
		Limits: master.Limits{
			InstancesPerProcess: cfg.Limits.InstancesPerProcess, ExecutorsPerApp: cfg.Limits.ExecutorsPerApp,
			Executors: cfg.Limits.Executors, NameLength: cfg.Limits.NameLength,
		},
	}, nil
}

func workerOptions(cfg *config.Config, ip string, port int, dataDir string, log *slog.Logger) (worker.Options, error) {
	key, err := gossipKey(cfg)
	if err != nil {
		return worker.Options{}, err
	}
	tc, err := nodeTLS(cfg, log)
	if err != nil {
		return worker.Options{}, err
	}
	return worker.Options{
		IP: ip, Port: port, Masters: cfg.Masters, DataDir: dataDir, Token: cfg.Token,
		FailoverTimeout: cfg.FailoverTimeout, HeartbeatInterval: cfg.Worker.HeartbeatInterval,
		StopAfterDisconnect: cfg.EffectiveStopAfterDisconnect(), OnExit: cfg.Worker.OnExit,
		CPUs: cfg.Worker.CPUs,
		Policy: procs.Policy{
			Restart: cluster.RestartPolicy(cfg.Executor.Restart), BackoffMin: cfg.Executor.BackoffMin, BackoffMax: cfg.Executor.BackoffMax,
			MinUptime: cfg.Executor.MinUptime, Window: cfg.Executor.RestartWindow, MaxRestarts: cfg.Executor.MaxRestarts,
		},
		StopTimeout: cfg.Executor.StopTimeout, LogMaxSize: cfg.Executor.LogMaxSize, LogMaxFiles: cfg.Executor.LogMaxFiles,
		AdminSocket: cfg.Worker.AdminSocket, ExtraEnv: channelEnv(cfg), JarRoot: cfg.JarStore.RootPath,
		GossipKey: key, GossipLabel: cfg.Gossip.ClusterLabel, Logger: log,
		BundleLimits: cli.BundleLimits(cfg), CacheSize: cfg.Worker.CacheSize, CacheGrace: cfg.Worker.CacheGrace,
		User: cfg.Worker.User, AllowedUsers: cfg.Worker.AllowedUsers, MetricsOpen: cfg.Metrics.Open,
		TLS: tc,
	}, nil
}

// channelEnv hands the Redis global channel settings to executors.
func channelEnv(cfg *config.Config) []string {
	c := cfg.Channel
	if c.Redis == "" && len(c.SentinelAddrs) == 0 && len(c.ClusterAddrs) == 0 {
		return nil
	}
	env := []string{
		"GEAR_CHANNEL_REDIS=" + c.Redis,
		"GEAR_CHANNEL_DB=" + strconv.Itoa(c.DB),
		"GEAR_CHANNEL_TLS=" + strconv.FormatBool(c.TLS),
		"GEAR_CHANNEL_MEMBER_TTL=" + c.MemberTTL.String(),
	}
	if c.Password != "" {
		env = append(env, "GEAR_CHANNEL_PASSWORD="+c.Password)
	}
	if c.SentinelMaster != "" {
		env = append(env, "GEAR_CHANNEL_SENTINEL_MASTER="+c.SentinelMaster, "GEAR_CHANNEL_SENTINEL_ADDRS="+strings.Join(c.SentinelAddrs, ","))
	}
	if len(c.ClusterAddrs) > 0 {
		env = append(env, "GEAR_CHANNEL_CLUSTER_ADDRS="+strings.Join(c.ClusterAddrs, ","))
	}
	return env
}

// masterPort picks the master's port: -port, else the port gear.conf
// lists for this host, else config.DefaultMasterPort.
func masterPort(cfg *config.Config, flagPort int) int {
	if flagPort != 0 {
		return flagPort
	}
	for _, m := range cfg.Masters {
		host, p, err := net.SplitHostPort(m)
		if err == nil && host == cfg.Hostname {
			if n, err := strconv.Atoi(p); err == nil {
				return n
			}
		}
	}
	return config.DefaultMasterPort
}

// defaultDataDir is gear.datadir when set, else a directory per role, ip
// and port under the install, so several daemons on one machine never
// share one.
func defaultDataDir(home string, cfg *config.Config, role, ip string, port int) string {
	if cfg.DataDir != "" {
		return cfg.DataDir
	}
	return filepath.Join(home, "data", fmt.Sprintf("%s-%s-%d", role, ip, port))
}

func runMaster(fs *flag.FlagSet) cli.Action {
	var d daemonFlags
	d.register(fs, "default: this host's entry in gear.cluster.masters, else "+strconv.Itoa(config.DefaultMasterPort))
	join := fs.String("join", "", "with a fresh data dir, ask the master at `host:port` (any of the group) to add this one instead of bootstrapping")
	return func(ctx context.Context, c *cli.Call) error {
		cfg, err := c.LoadConfig(d.overrides())
		if err != nil {
			return err
		}
		log, closeLog, err := c.DaemonLogger(cfg)
		if err != nil {
			return err
		}
		defer closeLog()
		port := masterPort(cfg, d.port)
		dataDir := d.datadir
		if dataDir == "" {
			dataDir = defaultDataDir(c.Home(), cfg, "master", cfg.Hostname, port)
		}
		opts, err := masterOptions(cfg, cfg.Hostname, port, dataDir, log)
		if err != nil {
			return err
		}
		if *join != "" {
			if _, _, err := config.ParseHostPort(*join); err != nil {
				return cli.Usagef("-join: %v", err)
			}
			opts.Join = *join
		}
		m, err := master.New(ctx, opts)
		if err != nil {
			return err
		}
		defer m.Close()
		go reportUnreachablePeers(ctx, log, m.Addr(), cfg.Masters)
		return m.Run(ctx)
	}
}

// reportUnreachablePeers tells the operator at start which configured
// masters cannot be resolved or reached, with the reason.
func reportUnreachablePeers(ctx context.Context, log *slog.Logger, self string, masters []string) {
	for _, m := range masters {
		host, _, _ := net.SplitHostPort(m)
		if net.ParseIP(host) == nil {
			if _, err := net.LookupHost(host); err != nil {
				log.Error("a configured master's host name does not resolve; fix gear.cluster.masters", "master", m, "err", err)
			}
		}
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(3 * time.Second):
	}
	for _, m := range masters {
		if m == self {
			continue
		}
		c, err := net.DialTimeout("tcp", m, time.Second)
		if err != nil {
			log.Warn("a configured master is unreachable; the group works while a majority is up, but check the address in gear.cluster.masters and that the master runs", "master", m, "err", err)
			continue
		}
		_ = c.Close()
	}
}

func runWorker(fs *flag.FlagSet) cli.Action {
	var d daemonFlags
	d.register(fs, "default: any free port")
	return func(ctx context.Context, c *cli.Call) error {
		cfg, err := c.LoadConfig(d.overrides())
		if err != nil {
			return err
		}
		if c.Global.Masters != "" {
			cfg.Masters = c.Global.MasterList()
		}
		log, closeLog, err := c.DaemonLogger(cfg)
		if err != nil {
			return err
		}
		defer closeLog()
		dataDir := d.datadir
		if dataDir == "" {
			dataDir = defaultDataDir(c.Home(), cfg, "worker", cfg.Hostname, d.port)
		}
		opts, err := workerOptions(cfg, cfg.Hostname, d.port, dataDir, log)
		if err != nil {
			return err
		}
		w, err := worker.New(ctx, opts)
		if err != nil {
			return err
		}
		defer w.Close()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					log.Info("SIGHUP: rolling restart of this worker's executors")
					if err := w.RollingRestart(ctx, ""); err != nil {
						log.Warn("rolling restart", "err", err)
					}
				}
			}
		}()
		return w.Run(ctx)
	}
}

func runLocal(fs *flag.FlagSet) cli.Action {
	n := fs.Int("workernum", 2, "number of workers")
	port := fs.Int("port", 0, "master `port` (default: the first entry of gear.cluster.masters)")
	datadir := fs.String("datadir", "", "keep data in this `dir` (default: <install>/data/local)")
	return func(ctx context.Context, c *cli.Call) error {
		if *n < 0 {
			return cli.Usagef("-workernum must be >= 0, got %d", *n)
		}
		cfg, err := c.LoadConfig(nil)
		if err != nil {
			return err
		}
		base := *datadir
		if base == "" {
			base = filepath.Join(c.Home(), "data", "local")
			if cfg.DataDir != "" {
				base = cfg.DataDir
			}
		}
		log, closeLog, err := c.DaemonLogger(cfg)
		if err != nil {
			return err
		}
		defer closeLog()
		return local(ctx, c.Stderr, cfg, log, *n, *port, base)
	}
}

// local runs one master and n workers in this process until ctx ends.
// Whatever fails on the way, every daemon made so far is closed again.
func local(ctx context.Context, stderr io.Writer, cfg *config.Config, log *slog.Logger, n, port int, base string) error {
	ip, p := cfg.Hostname, config.DefaultMasterPort
	if len(cfg.Masters) > 0 {
		if h, ps, err := net.SplitHostPort(cfg.Masters[0]); err == nil {
			ip = h
			p, _ = strconv.Atoi(ps)
		}
	}
	if port != 0 {
		p = port
	}
	self := net.JoinHostPort(ip, strconv.Itoa(p))
	cfg.Masters = []string{self}
	mopts, err := masterOptions(cfg, ip, p, filepath.Join(base, "master"), log.With("role", "master"))
	if err != nil {
		return err
	}
	m, err := master.New(ctx, mopts)
	if err != nil {
		return err
	}
	defer m.Close()
	cores, err := procs.AllowedCPUs()
	if err != nil {
		return err
	}
	var workers []*worker.Worker
	for i := range n {
		wopts, err := workerOptions(cfg, ip, 0, filepath.Join(base, fmt.Sprintf("worker-%d", i)), log.With("role", "worker"))
		if err != nil {
			return err
		}
		wopts.CPUs = coreShare(cores, i, n)
		w, err := worker.New(ctx, wopts)
		if err != nil {
			return fmt.Errorf("local worker %d: %w", i, err)
		}
		defer w.Close()
		workers = append(workers, w)
	}
	fmt.Fprintf(stderr, "gear local: master %s with %d worker(s); data in %s; stop with Ctrl-C\n", self, n, base)
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error { return m.Run(ectx) })
	for _, w := range workers {
		eg.Go(func() error { return w.Run(ectx) })
	}
	return eg.Wait()
}

// coreShare gives worker i of n its own slice of the cores, so that two
// local workers never pin executors to the same core; with fewer cores
// than workers every worker gets them all.
func coreShare(cores []int, i, n int) []int {
	if n <= 1 || len(cores) < n {
		return cores
	}
	var out []int
	for j, c := range cores {
		if j%n == i {
			out = append(out, c)
		}
	}
	return out
}
