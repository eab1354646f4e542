package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sync/errgroup"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/datadir"
	"github.com/gear-run/gear/pkg/gossip"
	"github.com/gear-run/gear/pkg/lifecycle"
	"github.com/gear-run/gear/pkg/netmux"
	"github.com/gear-run/gear/pkg/tlsconf"
)

// Options configure a master. The daemon fills them from gear.conf and
// flags; tests and `gear local` fill them directly.
type Options struct {
	IP      string   // address to bind and advertise (-ip / gear.hostname)
	Port    int      // the one port (-port); 0 picks a free one (tests, local mode)
	Masters []string // configured masters, host:port; must include this one
	DataDir string   // raft log, snapshots, local jar store, lock file
	Token   string   // cluster token every API call needs (but /ecv); "" = none
	// BundleLimits bound the master's own inspection of a submitted
	// bundle (gear.bundle.*, as the CLI and the workers apply them).
	BundleLimits bundle.Limits
	// MetricsOpen serves /metrics without the token (gear.metrics.open).
	MetricsOpen bool
	// FailoverTimeout tunes leader-loss detection, gossip suspicion and how
	// long an unreachable worker is tolerated before rescheduling.
	FailoverTimeout time.Duration
	JarRoot         string        // gear.jarstore.rootpath; "" = DataDir/jars (no HA)
	MaxBundleSize   int64         // 0 = no limit
	GCGrace         time.Duration // keep unreferenced bundles this long; 0 = delete at the next GC
	// RaftSegmentSize is gear.raft.segment-size: the size of one
	// preallocated raft log segment. 0 = the config default.
	RaftSegmentSize int64
	GossipKey       []byte
	GossipLabel     string
	Logger          *slog.Logger
	// Join is -join HOST:PORT: a master with a fresh data dir asks that
	// master to add it to the group instead of bootstrapping one
	// (membership.go). It need not be listed in Masters.
	Join string

	// ForgetAfter: the leader removes workers it has not heard from for
	// this long (gear.worker.forget-after); <= 0 = never.
	ForgetAfter time.Duration
	// Limits bound submits and scales (gear.limits.*); unset fields take
	// config.Default's values.
	Limits Limits
	// TLS, if set (gear.tls.*), makes the port speak mutual TLS (see
	// pkg/netmux) and the master dial its peers and workers with it.
	TLS *tlsconf.Node
}

// Master is a running master daemon.
type Master struct {
	opts  Options
	log   *slog.Logger
	self  string
	boot  string
	mux   *netmux.Mux
	fsm   *fsm
	raft  *raftNode
	pool  *gossip.Pool
	store jarstore.Store
	blobs *jarstore.Blobs
	http  *http.Server
	lock  *os.File

	// members lists the gossip pool as this master sees it: pool.Members,
	// faked by tests of placement.
	members func() []gossip.Member
	member  func(name string) (gossip.Member, bool) // pool.Member
	// verdicts are the masters' shared judgements of the leader (the
	// host-loss detector, see watchLeader).
	verdicts *verdicts

	serveDone chan error
	leaderObs chan raft.Observation // raft's leader observations

	life lifecycle.Life // Run and Close: shutdown runs once, whoever ends first

	metrics *masterMetrics
	events  *eventLog // recent events for GET /api/v1/events
	// digests: each worker's assignments digest (assignments.go).
	digests digestCache
	// reports: each worker's last acknowledged reports (heartbeat.go).
	reportCache reportCache
	// statusFlight: the workers whose reports are being replicated; a
	// heartbeat queues no second status entry behind the first.
	statusFlight inFlight
	// bells answer the workers' waiting doorbell requests (doorbell.go).
	bells *doorbells
	// scheduleNow asks the reconciler for a round before its next tick
	// (after a submit or a scale).
	scheduleNow chan struct{}

	ecvDisabled atomic.Bool
	started     time.Time

	mu       sync.Mutex
	lastSeen map[string]time.Time // worker id -> last heartbeat (leader only)
	leading  bool

	refusedLogged map[string]time.Time    // worker id -> last refused heartbeat logged (under mu)
	unpooled      map[string]unpooledNote // heartbeating workers missing from the gossip pool (under mu)
	// inGroup: at a first start, a running group's configuration listed
	// this master (added with gear masters add before it started).
	inGroup bool
	// stalledSince is when the commit index stopped behind the last log
	// index (see stallLoop); zero when it moves.
	stalledSince time.Time
	// quorumAt is when this leader last confirmed its quorum (see
	// confirmLoop); zero when not leading.
	quorumAt time.Time
	// readTerm is the term in which this leader last pushed a barrier
	// through its log, so that reads may use VerifyLeader (quorum.go).
	readTerm  uint64
	inspected inspections // bundles read at submit (inspect.go)

	fwd            *forwarder           // forwards to the leader (forward.go)
	fwdOnce        sync.Once            // builds fwd for a Master made without New (tests)
	peerTr         *http.Transport      // status, join, logs calls to other nodes
	nodeOnlyLogged map[string]time.Time // host -> last refusal logged (under mu)
}

// unpooledNote tracks a heartbeating worker missing from the gossip pool.
type unpooledNote struct {
	boot   string
	since  time.Time
	logged bool
}

// New binds the port, opens the data dir and the jar store, and starts
// raft and gossip. Run serves until its context ends.
func New(ctx context.Context, opts Options) (*Master, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Options left zero (tests, embedders) take gear's defaults, which live
	// in config.Default only.
	def := config.Default()
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = def.FailoverTimeout
	}
	if opts.IP == "" {
		opts.IP = def.Hostname
	}
	if opts.RaftSegmentSize <= 0 {
		opts.RaftSegmentSize = def.Raft.SegmentSize
	}
	opts.Limits = opts.Limits.withDefaults()
	var serverTLS *tls.Config
	if opts.TLS != nil {
		serverTLS = opts.TLS.Server
	}
	mux, err := netmux.ListenTLS(net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port)), serverTLS, opts.Logger)
	if err != nil {
		return nil, err
	}
	events := newEventLog(eventBuffer)
	m := &Master{opts: opts, mux: mux, fsm: &fsm{state: newState(), events: events}, lastSeen: map[string]time.Time{}, started: time.Now(),
		refusedLogged: map[string]time.Time{}, unpooled: map[string]unpooledNote{}, events: events, nodeOnlyLogged: map[string]time.Time{},
		bells: newDoorbells(), scheduleNow: make(chan struct{}, 1)}
	m.setupTransports()
	ok := false
	defer func() {
		if !ok {
			m.life.Release(m.shutdown)
		}
	}()
	if m.metrics, err = newMasterMetrics(m); err != nil {
		return nil, err
	}
	opts.Port = mux.Port()
	m.self = net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port))
	if len(opts.Masters) == 0 {
		opts.Masters = []string{m.self}
	}
	m.opts = opts
	m.log = opts.Logger.With("master", m.self)
	m.fsm.log = m.log
	m.boot = datadir.RandomID()
	m.verdicts = newVerdicts(m.self, m.boot, m.log)
	if opts.DataDir == "" {
		return nil, errors.New("master: no data dir given (-datadir)")
	}
	listed := slices.Contains(opts.Masters, m.self)
	var held *bool // the bootstrap decision, when made here already
	if !listed && opts.Join == "" && !hasRaftState(filepath.Join(opts.DataDir, "raft")) {
		// Refused before anything is created, unless a running group
		// lists it (added with gear masters add before it started).
		h := m.holdBootstrap()
		held = &h
		if !m.inGroup {
			return nil, errNotListed(m.self, opts.Masters)
		}
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if m.lock, err = datadir.Lock(opts.DataDir); err != nil {
		return nil, err
	}
	if dir := fileRootDir(opts.JarRoot); dir != "" {
		// Opened on first use, once its marker matches (storeid.go).
		m.store = &markedStore{root: opts.JarRoot, dir: dir, expect: m.storeID, init: func() error {
			if !m.isLeader() {
				return errors.New("only the leader sets it")
			}
			return m.initStoreID(dir)
		}, log: m.log}
	} else {
		store, err := jarstore.Open(ctx, opts.JarRoot, filepath.Join(opts.DataDir, "jars"), m.log)
		if err != nil {
			return nil, fmt.Errorf("open jar store %q: %w", opts.JarRoot, err)
		}
		m.store = store
	}
	m.blobs = jarstore.NewBlobs(m.store, m.log)
	switch {
	case opts.JarRoot == "":
		m.log.Warn("gear.jarstore.rootpath is not set: bundles are kept in this master's data dir only, so applications cannot be recovered if this master is lost; set it to hdfs://... or file:///shared/nfs/dir for HA",
			"dir", filepath.Join(opts.DataDir, "jars"))
	case jarstore.IsLocal(m.store):
		m.log.Warn("gear.jarstore.rootpath is a directory on this master (a path without a scheme, as in Gearpump): bundles in it do not survive the loss of this master, and each master keeps its own; set it to hdfs://... or file:///shared/nfs/dir for HA",
			"dir", opts.JarRoot)
	}
	raftLn := mux.Protocol(netmux.Raft)
	gossipLn := mux.Protocol(netmux.Gossip)
	httpLn := mux.HTTP()
	// Serve at once, before raft and the gossip join: masters started
	// together dial each other while they are still starting, and a peer
	// that does not serve yet stalls their joins and votes.
	m.serveDone = make(chan error, 1)
	go func() { m.serveDone <- m.mux.Serve() }()
	m.raft, err = startRaft(filepath.Join(opts.DataDir, "raft"), m.self, opts.Masters, opts.FailoverTimeout, opts.RaftSegmentSize, streamLayer{raftLn, m.clientTLS()}, m.fsm, m.log,
		func() bool {
			if held != nil {
				return *held || !listed
			}
			return m.holdBootstrap() || !listed
		})
	if err != nil {
		return nil, err
	}
	if !listed && !m.raft.resumed && opts.Join == "" && !m.inGroup {
		return nil, errNotListed(m.self, opts.Masters)
	}
	if m.raft.resumed {
		m.checkMembership()
	}
	// Leader changes become events and metrics (followLeader, under Run).
	m.leaderObs = make(chan raft.Observation, 64)
	m.raft.raft.RegisterObserver(raft.NewObserver(m.leaderObs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	ip, err := resolveIP(opts.IP)
	if err != nil {
		return nil, err
	}
	m.pool, err = gossip.Start(ctx, gossip.Options{
		Name: "master@" + m.self, BindIP: ip, Port: opts.Port, Streams: gossipLn,
		Meta: gossip.Meta{Role: gossip.RoleMaster, API: m.self, Boot: m.boot},
		Key:  opts.GossipKey, Label: opts.GossipLabel, Timeout: opts.FailoverTimeout, TLS: m.clientTLS(),
		Seeds: seeds(opts), Logger: m.log, OnChange: m.memberChanged, OnMessage: m.verdicts.receive,
	})
	if err != nil {
		return nil, err
	}
	m.members, m.member = m.pool.Members, m.pool.Member
	m.verdicts.send = m.pool.Send
	m.http = &http.Server{Handler: m.routes(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)} // TLS handshake failures, at warn
	m.http.RegisterOnShutdown(m.events.close) // end the event streams, or Shutdown waits for them
	m.http.RegisterOnShutdown(m.bells.close)  // and the waiting doorbells
	go func() { _ = m.http.Serve(httpLn) }()
	ok = true
	m.log.Info("master started", "addr", m.self, "masters", opts.Masters, "data", opts.DataDir, "failover_timeout", opts.FailoverTimeout)
	return m, nil
}

// Addr is the master's host:port.
func (m *Master) Addr() string { return m.self }

// Run serves until ctx is done or Close is called, then releases
// everything (as Close does). The background loops end before anything
// they use is closed.
func (m *Master) Run(ctx context.Context) error {
	ctx, end, err := m.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("master %s: %w", m.self, err)
	}
	defer end()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(lifecycle.Serving(gctx, m.serveDone))
	g.Go(func() error { m.raft.watchLeader(gctx, m.self, m.verdicts, m.log); return nil })
	g.Go(func() error { m.followLeader(gctx, m.leaderObs); return nil })
	g.Go(func() error { m.raft.campaignOnColdStart(gctx, m.self, m.log); return nil })
	g.Go(func() error { m.raft.wal.watch(gctx, 250*time.Millisecond); return nil })
	g.Go(func() error { m.scheduleLoop(gctx); return nil })
	g.Go(func() error { m.confirmLoop(gctx); return nil })
	g.Go(func() error { m.gcLoop(gctx); return nil })
	g.Go(func() error { m.stallLoop(gctx); return nil })
	g.Go(func() error { m.storeIDLoop(gctx); return nil })
	g.Go(func() error { m.promoteLoop(gctx); return nil })
	g.Go(func() error { m.joinLoop(gctx); return nil })
	err = g.Wait()
	m.life.Release(m.shutdown)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ErrClosed is returned (wrapped) by Run on a master that was closed.
var ErrClosed = lifecycle.ErrClosed

// Close stops the master and releases its port (TCP and gossip UDP),
// raft, gossip, the jar store and the data-dir lock. It ends a running
// Run and waits for it; it may be called more than once, also
// concurrently with Run's end. Run after Close fails with ErrClosed.
func (m *Master) Close() error {
	m.life.Close(m.shutdown)
	return nil
}

func (m *Master) shutdown() {
	if m.events != nil {
		m.events.close()
	}
	if m.http != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = m.http.Shutdown(sctx)
		cancel()
	}
	if m.fwd != nil {
		m.fwd.closeIdle() // the leader's side sees them go now, not at its exit
	}
	if m.pool != nil {
		_ = m.pool.Close()
		m.pool = nil
	}
	if m.raft != nil {
		m.raft.close()
		m.raft = nil
	}
	if m.mux != nil {
		_ = m.mux.Close()
	}
	if m.store != nil {
		_ = m.store.Close()
		m.store = nil
	}
	if m.lock != nil {
		_ = m.lock.Close()
		m.lock = nil
	}
}

// seeds are the gossip seeds: the configured masters and -join's.
func seeds(opts Options) []string {
	if opts.Join != "" && !slices.Contains(opts.Masters, opts.Join) {
		return append(slices.Clone(opts.Masters), opts.Join)
	}
	return opts.Masters
}

// isLeader reports whether this master leads.
func (m *Master) isLeader() bool {
	return m.raft != nil && m.raft.raft.State() == raft.Leader
}

// leader returns the leader's address, "" if none is known.
func (m *Master) leader() string {
	if m.raft == nil {
		return ""
	}
	a, _ := m.raft.raft.LeaderWithID()
	return string(a)
}

// apply replicates a command and returns its result. It fails with
// ErrNoLeader when this master is not (or no longer) the leader.
func (m *Master) apply(c command) (result, error) {
	c.Now = time.Now().UTC()
	b, err := encodeCommand(c)
	if err != nil {
		return result{}, err
	}
	fut := m.raft.raft.Apply(b, 5*time.Second)
	if err := fut.Error(); err != nil {
		if p := m.raft.wal.problem(); p != nil {
			// This master's own log cannot be written (raft stepped
			// down because of it): say so, not "no quorum".
			return result{}, p
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrEnqueueTimeout) {
			return result{}, fmt.Errorf("%w: %s", ErrNoLeader, m.quorumReport())
		}
		return result{}, err
	}
	r, _ := fut.Response().(result)
	return r, r.Err
}

// quorumReport says which masters this one can and cannot reach.
func (m *Master) quorumReport() string {
	var can, cannot []string
	for _, v := range m.raft.voters() {
		if v == m.self || m.pool.Alive(v) {
			can = append(can, v)
		} else {
			cannot = append(cannot, v)
		}
	}
	n := len(can) + len(cannot)
	return fmt.Sprintf("master %s has no quorum: it reaches %v and cannot reach %v; a quorum needs %d of the %d masters, so writes are refused until enough of them are back",
		m.self, can, cannot, n/2+1, n)
}

func resolveIP(host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("cannot resolve %q to an address (check -ip / gear.hostname): %v", host, err)
	}
	return ips[0].String(), nil
}

// poolState is the gossip pool's state of a member here ("unknown" if
// the pool has not seen it).
func (m *Master) poolState(name string) string {
	if g, ok := m.pool.Member(name); ok {
		return g.State
	}
	return "unknown"
}

// workerAlive reports whether the leader heard from worker id within the
// failover timeout.
func (m *Master) workerAlive(id string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.lastSeen[id]
	return ok && now.Sub(t) < m.opts.FailoverTimeout
}

func (m *Master) seen(id string, now time.Time) {
	m.mu.Lock()
	m.lastSeen[id] = now
	m.mu.Unlock()
}

// poolMembers indexes this master's view of the gossip pool by node name.
func (m *Master) poolMembers() map[string]gossip.Member {
	out := map[string]gossip.Member{}
	if m.members == nil {
		return out
	}
	for _, mem := range m.members() {
		out[mem.Name] = mem
	}
	return out
}

// gossipState is worker w's state in the gossip pool (alive, dead, left),
// or "" when the pool does not know this incarnation of it: the member
// must carry the worker's name, the worker role, and the API address and
// boot id the worker registered with. A heartbeat alone (anyone with the
// token can send one) does not make a node a member.
func gossipState(members map[string]gossip.Member, w *cluster.Worker) string {
	mem, _ := workerMember(members, w)
	return mem.State
}

// workerMember is worker w's member in the gossip pool, if the pool knows
// this incarnation of it (see gossipState).
func workerMember(members map[string]gossip.Member, w *cluster.Worker) (gossip.Member, bool) {
	mem, ok := members[gossip.WorkerName(w.ID)]
	if !ok || mem.Meta.Role != gossip.RoleWorker || mem.Meta.API != w.Addr || mem.Meta.Boot != w.BootID {
		return gossip.Member{}, false
	}
	return mem, true
}

// gossipStateOf is gossipState for one worker, without listing the pool.
func (m *Master) gossipStateOf(w *cluster.Worker) string {
	if m.member == nil {
		return ""
	}
	mem, ok := m.member(gossip.WorkerName(w.ID))
	if !ok {
		return ""
	}
	return gossipState(map[string]gossip.Member{mem.Name: mem}, w)
}

// noteUnpooled logs, once per worker incarnation, that a worker heartbeats
// but has not been alive in the gossip pool for half a failover timeout,
// so nothing is placed on it. (A starting worker joins the pool within
// moments of its first heartbeat.)
func (m *Master) noteUnpooled(ws []*cluster.Worker, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range ws {
		n, ok := m.unpooled[w.ID]
		if !ok || n.boot != w.BootID {
			n = unpooledNote{boot: w.BootID, since: now}
		}
		if n.logged || now.Sub(n.since) < m.opts.FailoverTimeout/2 {
			m.unpooled[w.ID] = n
			continue
		}
		n.logged = true
		m.unpooled[w.ID] = n
		m.log.Warn("worker heartbeats but is not alive in the gossip pool: no executors are placed on it until it is (check that its port is reachable over TCP and UDP from the masters and that gear.gossip.key and gear.gossip.cluster-label match)",
			"worker", w.ID, "addr", w.Addr)
	}
}

// longDead lists, sorted, the workers not heard from for at least after.
// A worker without a lastSeen entry has not been judged yet (a new leader
// gives every worker a fresh start) and is kept.
func longDead(workers map[string]*cluster.Worker, lastSeen map[string]time.Time, now time.Time, after time.Duration) []string {
	if after <= 0 {
		return nil
	}
	var out []string
	for id := range workers {
		if t, ok := lastSeen[id]; ok && now.Sub(t) >= after {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// forgetLongDead removes workers not heard from for gear.worker.forget-after
// through a raft write.
func (m *Master) forgetLongDead(now time.Time) error {
	if m.opts.ForgetAfter <= 0 {
		return nil
	}
	// Copied first: the scheduler takes m.mu before the state's lock.
	m.mu.Lock()
	seen := maps.Clone(m.lastSeen)
	m.mu.Unlock()
	var ids []string
	m.fsm.read(func(s *State) { ids = longDead(s.Workers, seen, now, m.opts.ForgetAfter) })
	if len(ids) == 0 {
		return nil
	}
	if _, err := m.apply(command{Op: opForget, Forget: ids}); err != nil {
		return err
	}
	m.mu.Lock()
	for _, id := range ids {
		delete(m.lastSeen, id)
		delete(m.unpooled, id)
	}
	m.mu.Unlock()
	m.log.Info("forgot workers not heard from for gear.worker.forget-after", "workers", ids, "forget_after", m.opts.ForgetAfter)
	return nil
}

// workersView fills the non-replicated fields of the workers.
func (m *Master) workersView(st *State, now time.Time) []cluster.Worker {
	var out []cluster.Worker
	members := m.poolMembers()
	for _, w := range st.Workers {
		v := *w
		m.mu.Lock()
		v.LastSeen = m.lastSeen[w.ID]
		m.mu.Unlock()
		v.Alive = !v.LastSeen.IsZero() && now.Sub(v.LastSeen) < m.opts.FailoverTimeout
		if g, ok := workerMember(members, w); ok {
			v.Gossip, v.GossipSince = g.State, g.Since.UTC()
		}
		v.Executors = []string{}
		used := map[int]bool{}
		for _, app := range st.Apps {
			for _, e := range app.Executors {
				if e.Worker == w.ID {
					v.Executors = append(v.Executors, e.ID)
					for _, c := range e.CPUs {
						used[c] = true
					}
				}
			}
		}
		v.FreeCPUs = []int{}
		for _, c := range w.CPUs {
			if !used[c] {
				v.FreeCPUs = append(v.FreeCPUs, c)
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b cluster.Worker) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}
