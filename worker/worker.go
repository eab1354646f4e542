package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

	mu          sync.Mutex
	execs       map[string]*executor
	adopted     map[string]*procs.Process // found at start, waiting for the leader's word
	orphanStops map[string]bool           // being stopped outside execs (orphans, fenced); not started again until gone
	lastContact time.Time                 // last leader contact, or last moment no leader could exist
	fenced      bool
	stopMode    string // set by the REPL's stop/kill: "graceful" or "hard"

	quorumDownLogged bool           // heartbeat goroutine only
	life             lifecycle.Life // Run, Close and the REPL's stop: close runs once
	unpooledSince    time.Time      // heartbeat goroutine only: the leader has not seen us in the pool since
	lastRejoin       time.Time      // heartbeat goroutine only
	rejoining        atomic.Bool
	rejoinLogged     time.Time      // owned by the rejoin goroutine (one at a time)
	wg               sync.WaitGroup // executor goroutines
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
	mux, err := netmux.Listen(net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port)))
	if err != nil {
		return nil, err
	}
	w := &Worker{opts: opts, mux: mux, boot: datadir.RandomID(), kick: make(chan struct{}, 1),
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
		Key:  opts.GossipKey, Label: opts.GossipLabel, Timeout: opts.FailoverTimeout,
		Seeds: opts.Masters, Logger: w.log,
	})
	if err != nil {
		return nil, err
	}
	w.http = &http.Server{Handler: w.routes(), ReadHeaderTimeout: 10 * time.Second}
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
	g.Go(func() error {
		select {
		case err := <-w.serveDone:
			return err
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { w.heartbeatLoop(gctx); return nil })
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
}

// heartbeatLoop reports to the leader and applies its answer. When no
// master answers it backs off (up to half a second) and says so in the log;
// after StopAfterDisconnect without a leader it fences: it stops every
// executor, because the masters are about to run them elsewhere.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	// Retries stay frequent enough that a link that flaps (up for half a
	// second at a time) carries a heartbeat in most of its up phases.
	retryCap := max(2*w.opts.HeartbeatInterval, 500*time.Millisecond)
	interval := w.opts.HeartbeatInterval
	delay := time.Duration(0)
	failures := 0
	w.mu.Lock()
	w.lastContact = time.Now()
	w.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		case <-w.kick:
		}
		// An attempt never runs past the fencing deadline, so that the
		// fence comes on time even while masters answer slowly or not at
		// all.
		hctx, cancel := context.WithTimeout(ctx, min(w.heartbeatTimeout(), max(w.untilFence(), 20*time.Millisecond)))
		sent := time.Now()
		reply, err := w.client.Heartbeat(hctx, w.heartbeat())
		cancel()
		w.metrics.heartbeat(sent, err)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			delay = min(interval<<min(failures, 3), retryCap)
			var apiErr *cluster.APIError
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden {
				// The leader is there but does not take this worker for
				// who it says it is: retrying will not help by itself, and
				// the executors are fenced like after a lost contact.
				if failures == 1 || failures%20 == 0 {
					w.log.Error("the leader refuses this worker's identity; another worker holds its id", "id", w.id, "data", w.opts.DataDir, "attempt", failures, "err", err)
				}
			} else if failures == 1 || failures%20 == 0 {
				w.log.Warn("cannot reach the leader through any master; retrying with backoff", "masters", w.client.Masters(), "retry_in", delay, "attempt", failures, "err", err)
			}
			w.maybeFence()
			delay = min(delay, max(w.untilFence(), 0))
			continue
		}
		// The contact counts from when the leader last confirmed that a
		// quorum of masters follows it (see master/quorum.go): a leader
		// cut off from the others answers until its lease ends, while a
		// new one may already be counting towards rescheduling.
		contact, ok := leaderContact(time.Now(), reply.QuorumAgeMS, w.opts.StopAfterDisconnect)
		if !ok {
			failures++
			delay = min(interval<<min(failures, 3), retryCap)
			if failures == 1 || failures%20 == 0 {
				w.log.Warn("the leader answers but has not confirmed its quorum of masters for too long; retrying", "leader", reply.Leader, "quorum_age_ms", reply.QuorumAgeMS, "attempt", failures)
			}
			w.maybeFence()
			continue
		}
		if failures > 0 {
			w.log.Info("reached the leader again", "leader", reply.Leader, "after_attempts", failures)
		}
		failures, delay = 0, interval
		w.client.SetMasters(reply.Masters)
		w.client.Prefer(reply.Leader)
		w.mu.Lock()
		if contact.After(w.lastContact) {
			w.lastContact = contact
		}
		w.fenced = false
		w.mu.Unlock()
		w.quorumDownLogged = false
		w.checkPooled(reply.Gossip)
		w.reconcile(reply.Assignments)
	}
}

// checkPooled rejoins the masters' gossip pool when the leader has not seen
// this worker alive there for a second (e.g. after a crash and a restart
// on another port, while the pool still held the old address): the leader
// places executors only on pool members. At most once a second, in the
// background.
func (w *Worker) checkPooled(state string) {
	if state == "alive" {
		w.unpooledSince = time.Time{}
		return
	}
	now := time.Now()
	if w.unpooledSince.IsZero() {
		w.unpooledSince = now
	}
	if now.Sub(w.unpooledSince) < time.Second || now.Sub(w.lastRejoin) < time.Second || w.pool == nil || !w.rejoining.CompareAndSwap(false, true) {
		return
	}
	w.lastRejoin = now
	since := w.unpooledSince
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.rejoining.Store(false)
		err := w.pool.Rejoin()
		if err == nil && time.Since(w.rejoinLogged) < 30*time.Second {
			return
		}
		w.rejoinLogged = time.Now()
		if err != nil {
			w.log.Warn("the leader does not see this worker in the gossip pool, and rejoining it failed; no executors are placed here until it is back", "gossip_state", state, "since", since, "err", err)
			return
		}
		w.log.Info("the leader does not see this worker alive in the gossip pool; rejoined it (repeated every second until it does)", "gossip_state", state, "since", since)
	}()
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

// leaderContact is when a heartbeat answered at now by a leader that last
// confirmed its quorum quorumAgeMS before counts as contact, and whether
// it counts at all: not when that confirmation is older than the fencing
// deadline stopAfter (the leader may already be deposed).
func leaderContact(now time.Time, quorumAgeMS int64, stopAfter time.Duration) (time.Time, bool) {
	contact := now.Add(-time.Duration(max(quorumAgeMS, 0)) * time.Millisecond)
	return contact, stopAfter <= 0 || now.Sub(contact) < stopAfter
}

// masterDialTimeout bounds one TCP connect to a master.
const masterDialTimeout = 500 * time.Millisecond

// heartbeatTimeout bounds one heartbeat: short enough that a frozen or
// partitioned master is given up on well within the fencing deadline.
func (w *Worker) heartbeatTimeout() time.Duration {
	d := 2 * time.Second
	if w.opts.StopAfterDisconnect > 0 {
		d = min(d, w.opts.StopAfterDisconnect/4)
	}
	return max(d, 2*w.opts.HeartbeatInterval)
}

// untilFence is how long until this worker fences itself if no leader
// answers (a day when it will not: fenced already, or fencing is off).
func (w *Worker) untilFence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.opts.StopAfterDisconnect < 0 || w.fenced {
		return 24 * time.Hour
	}
	return w.opts.StopAfterDisconnect - time.Since(w.lastContact)
}

func (w *Worker) maybeFence() {
	if w.opts.StopAfterDisconnect < 0 {
		return
	}
	if masters := w.client.Masters(); !quorumPossible(masters) {
		// Every master that could form a quorum refuses connections: the
		// processes are down, not cut off from us, so no leader can exist
		// to reschedule these executors and stopping them would only turn
		// a master outage into an application outage.
		// A leader elected later gives workers a full timeout to report
		// in, so the fence clock restarts from now.
		if !w.quorumDownLogged {
			w.quorumDownLogged = true
			w.log.Warn("masters are down (connections refused), not unreachable: keeping executors running, since no leader can exist to run them elsewhere", "masters", masters)
		}
		w.mu.Lock()
		w.lastContact = time.Now()
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	since := time.Since(w.lastContact)
	if since < w.opts.StopAfterDisconnect || w.fenced {
		w.mu.Unlock()
		return
	}
	w.fenced = true
	execs := make([]*executor, 0, len(w.execs))
	for id, e := range w.execs {
		execs = append(execs, e)
		delete(w.execs, id)
		w.orphanStops[id] = true
	}
	adopted := w.adopted
	w.adopted = map[string]*procs.Process{}
	for id := range adopted {
		w.orphanStops[id] = true
	}
	w.mu.Unlock()
	if len(execs) == 0 && len(adopted) == 0 {
		return
	}
	w.log.Error("no contact with a leader: stopping every executor so that none runs twice once the masters reschedule them",
		"since", since.Round(time.Millisecond), "stop_after_disconnect", w.opts.StopAfterDisconnect, "executors", len(execs)+len(adopted))
	// The masters reschedule after the failover timeout; the stop must be
	// over by then, so the grace is what is left of it.
	grace := max(w.opts.FailoverTimeout-since-w.opts.HeartbeatInterval, 100*time.Millisecond)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		// Once gone, an executor may be started again (the leader may
		// still assign it here when contact comes back).
		gone := func(id string) {
			w.mu.Lock()
			delete(w.orphanStops, id)
			w.mu.Unlock()
			w.kickHeartbeat()
		}
		var wg sync.WaitGroup
		for _, e := range execs {
			wg.Add(1)
			go func() { defer wg.Done(); e.stopWithin(ctx); gone(e.id) }()
		}
		for id, p := range adopted {
			wg.Add(1)
			go func() { defer wg.Done(); stopWithin(ctx, p); gone(id) }()
		}
		wg.Wait()
	}()
}

// quorumPossible reports whether a quorum of masters might be alive
// somewhere: only a master whose port actively refuses connections is
// known to be down (a partitioned or frozen one just does not answer).
func quorumPossible(masters []string) bool {
	refused := 0
	for _, m := range masters {
		c, err := net.DialTimeout("tcp", m, 300*time.Millisecond)
		if err == nil {
			_ = c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused++
		}
	}
	return len(masters)-refused >= len(masters)/2+1
}

// heartbeat describes this worker and its executors.
func (w *Worker) heartbeat() cluster.Heartbeat {
	hb := cluster.Heartbeat{Worker: cluster.Worker{ID: w.id, Addr: w.addr, CPUs: w.opts.CPUs, BootID: w.boot}, Secret: w.secret}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.execs {
		hb.Executors = append(hb.Executors, e.report())
	}
	slices.SortFunc(hb.Executors, func(a, b cluster.ExecutorReport) int { return strings.Compare(a.ID, b.ID) })
	return hb
}

func (w *Worker) kickHeartbeat() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// reconcile starts what is assigned and not running, restarts what runs an
// older generation and stops what is no longer assigned.
func (w *Worker) reconcile(as []cluster.Assignment) {
	want := map[string]cluster.Assignment{}
	for _, a := range as {
		want[a.Executor.ID] = a
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, e := range w.execs {
		if _, ok := want[id]; !ok && !e.isStopping() {
			// It stays listed (STOPPING) until its process is gone, so
			// the leader sees STOPPED only when it really is.
			w.log.Info("executor no longer assigned here; stopping it", "executor", id)
			e.markStopping()
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				e.stop(false)
				// Still listed (STOPPING): nothing starts it again
				// until it is deleted below.
				w.removeWorkDir(id) // no longer assigned here
				w.mu.Lock()
				if w.execs[id] == e {
					delete(w.execs, id)
				}
				w.mu.Unlock()
				w.kickHeartbeat()
			}()
		}
	}
	for id, a := range want {
		e, ok := w.execs[id]
		if ok && e.isStopping() || w.orphanStops[id] {
			continue // assigned again while stopping: start it once it is gone
		}
		if !ok {
			if err := w.checkCPUs(a); err != nil {
				// Report it FAILED with the reason rather than leave the
				// leader waiting for an executor that will never start.
				w.log.Error("refusing placement", "executor", id, "err", err)
				e = newExecutor(w, a, nil)
				e.state, e.lastErr = cluster.Failed, "worker "+w.id+" refused the placement: "+err.Error()
				close(e.done)
				w.execs[id] = e
				continue
			}
			e = newExecutor(w, a, w.adopted[id])
			delete(w.adopted, id)
			w.execs[id] = e
			w.wg.Add(1)
			go func() { defer w.wg.Done(); e.run() }()
			continue
		}
		e.update(a)
	}
	// Orphans found at start that the leader does not assign here.
	for id, p := range w.adopted {
		w.log.Info("stopping an orphan executor the leader no longer assigns here", "executor", id, "pid", p.PID())
		delete(w.adopted, id)
		w.orphanStops[id] = true
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), w.stopTimeout()+time.Second)
			defer cancel()
			stopWithin(ctx, p)
			w.mu.Lock()
			delete(w.orphanStops, id)
			w.mu.Unlock()
			w.kickHeartbeat()
		}()
	}
}

// checkCPUs refuses a placement on cores this worker does not hand out or
// that another executor here holds exclusively. Called with mu held.
func (w *Worker) checkCPUs(a cluster.Assignment) error {
	for _, c := range a.Executor.CPUs {
		if !slices.Contains(w.opts.CPUs, c) {
			return fmt.Errorf("core %d is not one this worker hands out %v", c, w.opts.CPUs)
		}
		if a.Process.Shared {
			continue
		}
		for _, e := range w.execs {
			if !e.shared() && slices.Contains(e.cpus(), c) {
				return fmt.Errorf("core %d is held by executor %s", c, e.id)
			}
		}
	}
	return nil
}

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

// adoptOrphans finds executors a previous run of this worker left running.
func (w *Worker) adoptOrphans() {
	files, err := procs.ListPidFiles(filepath.Join(w.opts.DataDir, "pids"))
	if err != nil {
		w.log.Warn("list pid files", "err", err)
		return
	}
	for _, f := range files {
		p, err := procs.Adopt(f)
		if err != nil {
			continue // stale: Adopt removed it
		}
		id := strings.TrimSuffix(filepath.Base(f), ".pid")
		w.adopted[id] = p
		w.log.Info("found a running executor from a previous run; waiting for the leader to confirm it", "executor", id, "pid", p.PID())
	}
}

// workerCPUs validates the configured cores against what this process may
// use; nil means all of them.
func workerCPUs(want []int) ([]int, error) {
	allowed, err := procs.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	if len(want) == 0 {
		return allowed, nil
	}
	for _, c := range want {
		if !slices.Contains(allowed, c) {
			return nil, fmt.Errorf("gear.worker.cpus lists core %d, but this machine lets the worker use only %s (online cores in its affinity mask)", c, procs.FormatCPUList(allowed))
		}
	}
	out := slices.Clone(want)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// workerSecret reads the secret that proves this worker's id to the
// masters, creating it (256 random bits, mode 0600) on first start. It
// stays with the data dir, so a restarted worker that adopts its executors
// keeps its identity.
func workerSecret(dir string) (string, error) {
	path := filepath.Join(dir, "worker-secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read worker secret: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("create worker secret: %w", err)
	}
	secret := hex.EncodeToString(b[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write worker secret: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write worker secret: %w", err)
	}
	return secret, nil
}

// workerID reads the worker's stable id from its data dir, creating it on
// first start.
func workerID(dir string) (string, error) {
	path := filepath.Join(dir, "worker-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := "w-" + datadir.RandomID()[:8]
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write worker id: %w", err)
	}
	return id, nil
}
