package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/datadir"
	"github.com/gear-run/gear/pkg/gossip"
	"github.com/gear-run/gear/pkg/lifecycle"
	"github.com/gear-run/gear/pkg/netmux"
	"github.com/gear-run/gear/pkg/procs"
	"github.com/gear-run/gear/pkg/tlsconf"
)

// Options configure a worker.
type Options struct {
	IP      string
	Port    int // 0 picks a free port
	Masters []string
	DataDir string
	Token   string
	// FailoverTimeout is gear's failover timeout; the masters reschedule
	// this worker's executors after it stayed silent that long.
	FailoverTimeout   time.Duration
	HeartbeatInterval time.Duration
	// StopAfterDisconnect: stop every executor after this long without
	// contact to a leader. 0 = as config.EffectiveStopAfterDisconnect says
	// for FailoverTimeout; < 0 = never.
	StopAfterDisconnect time.Duration
	// OnExit says what a SIGINT/SIGTERM does to the executors: "stop"
	// stops them gracefully, "leave" leaves them running for the next
	// worker start to adopt.
	OnExit string
	CPUs   []int // cores to hand out; nil = every core this process may use
	// Policy holds the restart defaults; a bundle may override them.
	Policy      procs.Policy
	StopTimeout time.Duration
	LogMaxSize  int64
	LogMaxFiles int
	AdminSocket string // "" = DataDir/admin.sock; "-" disables the REPL
	// JarRoot is gear.jarstore.rootpath. When this worker can open that
	// store itself, it reads bundles straight from it.
	JarRoot     string
	ExtraEnv    []string // handed to every executor (e.g. GEAR_CHANNEL_*)
	GossipKey   []byte
	GossipLabel string
	Logger      *slog.Logger
	// BundleLimits bound unpacking a bundle (gear.bundle.*); zero fields
	// are bundle.DefaultLimits.
	BundleLimits bundle.Limits
	// CacheSize caps the bundle cache's unused entries (gear.worker.cache-size);
	// CacheGrace is how long an unused unpacked bundle is kept
	// (gear.worker.cache-grace). See cache.go.
	CacheSize  int64
	CacheGrace time.Duration
	// User runs executors as this unprivileged "user" or "user:group"
	// (gear.worker.user; needs a worker running as root); AllowedUsers
	// are those a process group may name with user = "..."
	// (gear.worker.allowed-users). See sandbox.go.
	User         string
	AllowedUsers []string
	// MetricsOpen: a /metrics route serves without the token
	// (gear.metrics.open); every other route but /ecv needs it.
	MetricsOpen bool
	// TLS, if set (gear.tls.*), makes the worker's port speak mutual TLS
	// and the worker dial the masters with its certificate (https,
	// gossip streams); masters refuse heartbeats without it.
	TLS *tlsconf.Node
}

// Worker is a running worker daemon.
type Worker struct {
	opts   Options
	log    *slog.Logger
	id     string
	secret string // proves this worker's id to the masters (DataDir/worker-secret)
	addr   string
	boot   string
	mux    *netmux.Mux
	pool   *gossip.Pool
	client *cluster.Client
	cache  *cache
	http   *http.Server
	lock   *os.File
	shared jarstore.Store // shared jar store, nil when not reachable

	serveDone chan error
	metrics   *workerMetrics

	kick chan struct{} // asks for an early heartbeat
	// startSlots bounds the executors being prepared and started at once
	// (executor.acquireStart); nil: unbounded.
	startSlots chan struct{}

	listeners listeners   // sockets of listen = [...] (listen.go)
	trees     treeCache   // the unpacked bundles' trees, for the working directories (sandbox.go)
	health    healthState // /ecv's inputs (health.go)

	mu          sync.Mutex
	execs       map[string]*executor
	adopted     map[string]*procs.Process // found at start, waiting for the leader's word
	orphanStops map[string]bool           // being stopped outside execs (orphans, fenced); not started again until gone
	lastContact time.Time                 // last leader contact, or last moment no leader could exist
	fenced      bool
	stopMode    string // set by the REPL's stop/kill: "graceful" or "hard"

	quorumDownLogged bool // heartbeat goroutine only
	// assigned and assignDigest: the leader's last assignments and their
	// digest (heartbeat goroutine only); a heartbeat reply that says they
	// are unchanged does not list them again.
	assigned     []cluster.Assignment
	assignDigest string
	// reports: which executor reports the leader holds (heartbeat
	// goroutine only): heartbeats send only what changed since.
	reports       reportSync
	life          lifecycle.Life // Run, Close and the REPL's stop: close runs once
	unpooledSince time.Time      // heartbeat goroutine only: the leader has not seen us in the pool since
	lastRejoin    time.Time      // heartbeat goroutine only
	rejoining     atomic.Bool
	rejoinLogged  time.Time      // owned by the rejoin goroutine (one at a time)
	wg            sync.WaitGroup // executor goroutines
}

// New binds the worker's port, locks its data dir and adopts executors a
// previous run left behind.
func New(ctx context.Context, opts Options) (*Worker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Options left zero (tests, embedders) take gear's defaults, which live
	// in config.Default only.
	def := config.Default()
	if opts.IP == "" {
		opts.IP = def.Hostname
	}
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = def.FailoverTimeout
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = def.Worker.HeartbeatInterval
	}
	if opts.StopAfterDisconnect == 0 {
		def.FailoverTimeout = opts.FailoverTimeout
		opts.StopAfterDisconnect = def.EffectiveStopAfterDisconnect()
	}
	if opts.OnExit == "" {
		opts.OnExit = def.Worker.OnExit
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = def.Executor.StopTimeout
	}
	if opts.LogMaxSize <= 0 {
		opts.LogMaxSize = def.Executor.LogMaxSize
	}
	if opts.LogMaxFiles <= 0 {
		opts.LogMaxFiles = def.Executor.LogMaxFiles
	}
	if opts.OnExit != "stop" && opts.OnExit != "leave" {
		return nil, fmt.Errorf("gear.worker.on-exit must be stop or leave, got %q", opts.OnExit)
	}
	if len(opts.Masters) == 0 {
		return nil, errors.New("worker: no masters configured: set gear.cluster.masters in gear.conf (host:port of every master) or GEAR_MASTERS")
	}
	for _, m := range opts.Masters {
		if _, p, err := net.SplitHostPort(m); err != nil || p == "" {
			return nil, fmt.Errorf("master address %q has no port (want host:port, e.g. \"node1:3000\")", m)
		}
	}
	if opts.DataDir == "" {
		return nil, errors.New("worker: no data dir given (-datadir)")
	}
	cpus, err := workerCPUs(opts.CPUs)
	if err != nil {
		return nil, err
	}
	opts.CPUs = cpus
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	var serverTLS *tls.Config
	if opts.TLS != nil {
		serverTLS = opts.TLS.Server
	}
	mux, err := netmux.ListenTLS(net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port)), serverTLS, opts.Logger)
	if err != nil {
		return nil, err
	}
	w := &Worker{opts: opts, mux: mux, boot: datadir.RandomID(), kick: make(chan struct{}, 1), startSlots: make(chan struct{}, startConcurrency),
		execs: map[string]*executor{}, adopted: map[string]*procs.Process{}, orphanStops: map[string]bool{}}
	ok := false
	defer func() {
		if !ok {
			w.life.Release(w.close)
		}
	}()
	if w.metrics, err = newWorkerMetrics(w); err != nil {
		return nil, err
	}
	w.opts.Port = mux.Port()
	w.addr = net.JoinHostPort(opts.IP, strconv.Itoa(w.opts.Port))
	if w.lock, err = datadir.Lock(opts.DataDir); err != nil {
		return nil, err
	}
	if w.id, err = workerID(opts.DataDir); err != nil {
		return nil, err
	}
	if w.secret, err = workerSecret(opts.DataDir); err != nil {
		return nil, err
	}
	w.log = opts.Logger.With("worker", w.id)
	w.client = cluster.NewClient(opts.Masters, opts.Token)
	w.client.HTTP.Timeout = 0
	// On a flapping link a lost SYN is resent by the kernel only after
	// 1 s, then 3 s, 7 s: with a link that is down half of every second
	// those resends can all land in the down half, and heartbeats fail
	// until the worker fences itself. Short dial attempts, each a fresh
	// SYN, get through in the next up phase (a SYN-ACK takes well under
	// a millisecond on a LAN).
	if tr, ok := w.client.HTTP.Transport.(*http.Transport); ok {
		tr.DialContext = (&net.Dialer{Timeout: masterDialTimeout}).DialContext
	}
	var clientTLS *tls.Config
	if opts.TLS != nil {
		clientTLS = opts.TLS.Client
		w.client.UseTLS(clientTLS)
	}
	if w.cache, err = newCache(filepath.Join(opts.DataDir, "bundles"), w.client, w.sharedStore(ctx), w.log,
		cacheOptions{Limits: opts.BundleLimits, Size: opts.CacheSize, Grace: opts.CacheGrace}); err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "pids", "run"} {
		if err := os.MkdirAll(filepath.Join(opts.DataDir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if opts.User != "" || len(opts.AllowedUsers) > 0 {
		if err := lockDataDir(opts.DataDir); err != nil {
			return nil, err
		}
		if d := untraversable(opts.DataDir); d != "" {
			opts.Logger.Warn("executors running as another user cannot reach their working directory under the data dir: make it traversable (chmod o+x)",
				"dir", d, "data", opts.DataDir, "user", opts.User)
		}
	}
	w.adoptOrphans()
	gossipLn := mux.Protocol(netmux.Gossip)
	httpLn := mux.HTTP()
	w.pool, err = gossip.Start(ctx, gossip.Options{
		Name: gossip.WorkerName(w.id), BindIP: opts.IP, Port: w.opts.Port, Streams: gossipLn,
		Meta: gossip.Meta{Role: gossip.RoleWorker, API: w.addr, Boot: w.boot},
		Key:  opts.GossipKey, Label: opts.GossipLabel, Timeout: opts.FailoverTimeout, TLS: clientTLS,
		Seeds: opts.Masters, Logger: w.log,
	})
	if err != nil {
		return nil, err
	}
	w.http = &http.Server{Handler: w.routes(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(w.log.Handler(), slog.LevelWarn)} // TLS handshake failures, at warn
	go func() { _ = w.http.Serve(httpLn) }()
	// Serve at once: peers may dial (gossip joins, raft) before Run.
	w.serveDone = make(chan error, 1)
	go func() { w.serveDone <- w.mux.Serve() }()
	ok = true
	w.log.Info("worker started", "addr", w.addr, "cpus", cpus, "masters", opts.Masters, "data", opts.DataDir)
	return w, nil
}

// ID is the worker's stable id (kept in its data dir).
func (w *Worker) ID() string { return w.id }

// Addr is the worker's host:port.
func (w *Worker) Addr() string { return w.addr }

// Run heartbeats and supervises until ctx ends. Then, per OnExit, it
// stops its executors or leaves them running.
func (w *Worker) Run(ctx context.Context) error {
	return w.run(ctx, w.opts.OnExit == "stop")
}

// ErrClosed is returned (wrapped) by Run on a worker that was closed.
var ErrClosed = lifecycle.ErrClosed

// Close stops the worker and releases its port (TCP and gossip UDP),
// gossip, the shared jar store and the data-dir lock. A running Run ends
// first, stopping or leaving the executors as OnExit says; executors
// adopted by a worker that never ran are left running. Close may be
// called more than once, also concurrently with Run's end.
func (w *Worker) Close() error {
	w.life.Close(w.close)
	return nil
}

func (w *Worker) run(ctx context.Context, stopExecs bool) error {
	ctx, end, err := w.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("worker %s: %w", w.id, err)
	}
	defer end()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(lifecycle.Serving(gctx, w.serveDone))
	g.Go(func() error { w.heartbeatLoop(gctx); return nil })
	g.Go(func() error { w.doorbellLoop(gctx); return nil })
	g.Go(func() error { w.cacheLoop(gctx); return nil })
	if sock := w.adminSocket(); sock != "" {
		g.Go(func() error { return w.serveAdmin(gctx, sock) })
	}
	// The loops end first, so nothing starts an executor while shutdown
	// stops (or leaves) them.
	err = g.Wait()
	w.shutdown(stopExecs)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (w *Worker) shutdown(stopExecs bool) {
	w.mu.Lock()
	stop := stopExecs
	if w.stopMode != "" {
		stop = true
	}
	hard := w.stopMode == "hard"
	execs := make([]*executor, 0, len(w.execs))
	for _, e := range w.execs {
		execs = append(execs, e)
	}
	w.mu.Unlock()
	if stop {
		w.log.Info("stopping executors", "count", len(execs), "hard", hard)
		w.stopAll(execs, hard)
	} else {
		w.log.Info("leaving executors running for the next worker start to adopt", "count", len(execs))
		for _, e := range execs {
			e.detach()
		}
	}
	w.wg.Wait()
	w.life.Release(w.close)
}

func (w *Worker) stopAll(execs []*executor, hard bool) {
	var wg sync.WaitGroup
	for _, e := range execs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.stop(hard)
		}()
	}
	wg.Wait()
}

func (w *Worker) close() {
	if w.http != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = w.http.Shutdown(sctx)
		cancel()
	}
	if w.pool != nil {
		_ = w.pool.Close()
		w.pool = nil
	}
	if w.mux != nil {
		_ = w.mux.Close()
	}
	if w.shared != nil {
		_ = w.shared.Close()
		w.shared = nil
	}
	if w.lock != nil {
		_ = w.lock.Close()
		w.lock = nil
	}
	w.listeners.closeAll()
}

// sharedStore opens the shared jar store when one is configured and this
// worker can reach it; nil means bundles come through the masters.
func (w *Worker) sharedStore(ctx context.Context) *jarstore.Blobs {
	if w.opts.JarRoot == "" || strings.HasPrefix(w.opts.JarRoot, "/") {
		// unset, or a directory on each master (Gearpump's "jarstore/"):
		// not this worker's to open.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	store, err := jarstore.Open(ctx, w.opts.JarRoot, "", w.log)
	if err != nil {
		w.log.Info("the jar store is not reachable from this worker; bundles come through the masters", "rootpath", w.opts.JarRoot, "err", err)
		return nil
	}
	w.shared = store
	return jarstore.NewBlobs(store, w.log)
}

// masterDialTimeout bounds one TCP connect to a master.
const masterDialTimeout = 500 * time.Millisecond

func (w *Worker) stopTimeout() time.Duration { return w.opts.StopTimeout }

func (w *Worker) adminSocket() string {
	switch w.opts.AdminSocket {
	case "-":
		return ""
	case "":
		return filepath.Join(w.opts.DataDir, "admin.sock")
	}
	return w.opts.AdminSocket
}
