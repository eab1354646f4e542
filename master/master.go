package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/datadir"
	"github.com/gear-run/gear/pkg/gossip"
	"github.com/gear-run/gear/pkg/netmux"
)

// Options configure a master. The daemon fills them from gear.conf and
// flags; tests and `gear local` fill them directly.
type Options struct {
	IP      string   // address to bind and advertise (-ip / gear.hostname)
	Port    int      // the one port (-port); 0 picks a free one (tests, local mode)
	Masters []string // configured masters, host:port; must include this one
	DataDir string   // raft log, snapshots, local jar store, lock file
	Token   string   // cluster token for mutating calls; "" = none
	// FailoverTimeout tunes leader-loss detection, gossip suspicion and how
	// long an unreachable worker is tolerated before rescheduling.
	FailoverTimeout time.Duration
	JarRoot         string // gear.jarstore.rootpath; "" = DataDir/jars (no HA)
	MaxBundleSize   int64
	GCGrace         time.Duration
	GossipKey       []byte
	GossipLabel     string
	Logger          *slog.Logger
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

	// verdicts are the masters' shared judgements of the leader (the
	// host-loss detector, see watchLeader).
	verdicts *verdicts

	serveDone chan error

	ecvDisabled atomic.Bool
	started     time.Time

	mu       sync.Mutex
	lastSeen map[string]time.Time // worker id -> last heartbeat (leader only)
	leading  bool
	// quorumAt is when this leader last confirmed its quorum (see
	// confirmLoop); zero when not leading.
	quorumAt time.Time
}

// New binds the port, opens the data dir and the jar store, and starts
// raft and gossip. Run serves until its context ends.
func New(ctx context.Context, opts Options) (*Master, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = 6 * time.Second
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	mux, err := netmux.Listen(net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port)))
	if err != nil {
		return nil, err
	}
	m := &Master{opts: opts, mux: mux, fsm: &fsm{state: newState()}, lastSeen: map[string]time.Time{}, started: time.Now()}
	ok := false
	defer func() {
		if !ok {
			m.shutdown()
		}
	}()
	opts.Port = mux.Port()
	m.self = net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port))
	if len(opts.Masters) == 0 {
		opts.Masters = []string{m.self}
	}
	if !slices.Contains(opts.Masters, m.self) {
		return nil, fmt.Errorf("this master (%s) is not listed in gear.cluster.masters %v: add it there, or start it with the -ip and -port it is listed under", m.self, opts.Masters)
	}
	m.opts = opts
	m.log = opts.Logger.With("master", m.self)
	m.boot = datadir.RandomID()
	m.verdicts = newVerdicts(m.self, m.boot, m.log)
	if opts.DataDir == "" {
		return nil, errors.New("master: no data dir given (-datadir)")
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if m.lock, err = datadir.Lock(opts.DataDir); err != nil {
		return nil, err
	}
	store, err := jarstore.Open(ctx, opts.JarRoot, filepath.Join(opts.DataDir, "jars"), m.log)
	if err != nil {
		return nil, fmt.Errorf("open jar store %q: %w", opts.JarRoot, err)
	}
	m.store = store
	m.blobs = jarstore.NewBlobs(store, m.log)
	if opts.JarRoot == "" {
		m.log.Warn("gear.jarstore.rootpath is not set: bundles are kept in this master's data dir only, so applications cannot be recovered if this master is lost; set it to hdfs://... or file:///shared/nfs/dir for HA",
			"dir", filepath.Join(opts.DataDir, "jars"))
	}
	raftLn := mux.Protocol(netmux.Raft)
	gossipLn := mux.Protocol(netmux.Gossip)
	httpLn := mux.HTTP()
	// Serve at once, before raft and the gossip join: masters started
	// together dial each other while they are still starting, and a peer
	// that does not serve yet stalls their joins and votes.
	m.serveDone = make(chan error, 1)
	go func() { m.serveDone <- m.mux.Serve() }()
	m.raft, err = startRaft(filepath.Join(opts.DataDir, "raft"), m.self, opts.Masters, opts.FailoverTimeout, raftLn, m.fsm, m.log)
	if err != nil {
		return nil, err
	}
	ip, err := resolveIP(opts.IP)
	if err != nil {
		return nil, err
	}
	m.pool, err = gossip.Start(ctx, gossip.Options{
		Name: "master@" + m.self, BindIP: ip, Port: opts.Port, Streams: gossipLn,
		Meta: gossip.Meta{Role: gossip.RoleMaster, API: m.self, Boot: m.boot},
		Key:  opts.GossipKey, Label: opts.GossipLabel, Timeout: opts.FailoverTimeout,
		Seeds: opts.Masters, Logger: m.log, OnMessage: m.verdicts.receive,
	})
	if err != nil {
		return nil, err
	}
	m.verdicts.send = m.pool.Send
	m.http = &http.Server{Handler: m.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.http.Serve(httpLn) }()
	ok = true
	m.log.Info("master started", "addr", m.self, "masters", opts.Masters, "data", opts.DataDir, "failover_timeout", opts.FailoverTimeout)
	return m, nil
}

// Addr is the master's host:port.
func (m *Master) Addr() string { return m.self }

// Run serves until ctx is done, then shuts down. The background loops end
// before anything they use is closed.
func (m *Master) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case err := <-m.serveDone:
			return err
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { m.raft.watchLeader(gctx, m.self, m.verdicts, m.log); return nil })
	g.Go(func() error { m.scheduleLoop(gctx); return nil })
	g.Go(func() error { m.confirmLoop(gctx); return nil })
	g.Go(func() error { m.gcLoop(gctx); return nil })
	err := g.Wait()
	m.shutdown()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (m *Master) shutdown() {
	if m.http != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = m.http.Shutdown(sctx)
		cancel()
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
	b, err := json.Marshal(c)
	if err != nil {
		return result{}, err
	}
	fut := m.raft.raft.Apply(b, 5*time.Second)
	if err := fut.Error(); err != nil {
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

// gossipState is the gossip pool's state of a member here ("unknown" if
// the pool has not seen it).
func (m *Master) gossipState(name string) string {
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

// workersView fills the non-replicated fields of the workers.
func (m *Master) workersView(st *State, now time.Time) []cluster.Worker {
	var out []cluster.Worker
	for _, w := range st.Workers {
		v := *w
		m.mu.Lock()
		v.LastSeen = m.lastSeen[w.ID]
		m.mu.Unlock()
		v.Alive = !v.LastSeen.IsZero() && now.Sub(v.LastSeen) < m.opts.FailoverTimeout
		if g, ok := m.pool.Member("worker@" + w.ID); ok {
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
