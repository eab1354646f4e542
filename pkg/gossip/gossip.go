// Package gossip is gear's membership pool: masters and workers join one
// github.com/hashicorp/memberlist pool that runs over the node's single port
// (TCP streams through netmux, UDP packets on the same port number).
//
// Node metadata carries the role, the HTTP API address and the boot id. The
// pool is a hint about who is alive, never authority: the replicated state
// and the raft quorum decide. memberlist never heals a healed partition by
// itself, so the pool keeps re-joining the configured seeds in the
// background.
package gossip

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gear-run/gear/pkg/logbridge"
	"github.com/gear-run/gear/pkg/netmux"
	"github.com/gear-run/gear/pkg/periodic"
)

// Roles a node may have. Nodes announcing any other role are refused.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
)

// WorkerName is the pool name of the worker with the given id.
func WorkerName(id string) string { return "worker@" + id }

// Meta is what every node tells the pool about itself.
type Meta struct {
	Role string `json:"r"`
	API  string `json:"a"` // host:port of its HTTP API
	Boot string `json:"b"` // changes on every process start
}

// Member is one node of the pool as this node sees it.
type Member struct {
	Name  string    `json:"name"`
	Addr  string    `json:"addr"`
	State string    `json:"state"` // alive | suspect | dead | left
	Since time.Time `json:"since"` // when this node saw State begin
	Meta  Meta      `json:"meta"`
}

// The states a Member can be in, as this node sees it. suspect is
// memberlist's suspicion: this node's probes of the member failed and it
// will be declared dead unless it refutes in time.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Options configure a pool member.
type Options struct {
	Name    string       // unique node name
	BindIP  string       // ip of the node's port
	Port    int          // the node's single port (TCP is already bound by netmux)
	Streams net.Listener // netmux.Protocol(netmux.Gossip)
	Meta    Meta
	Key     []byte // optional AES key (16, 24 or 32 bytes); encrypts UDP packets and streams
	// TLS, if set, is the node's client configuration: streams run mutual
	// TLS after the netmux prefix (the listener side is netmux's). UDP
	// packets are not TLS; Key covers them.
	TLS   *tls.Config
	Label string // cluster label; pools with other labels are kept apart
	// Timeout is gear's failover timeout (required); probe and suspicion
	// timing derive from it.
	Timeout time.Duration
	Seeds   []string // host:port of the configured masters
	Logger  *slog.Logger
	// OnChange, if set, is called when a member joins or its state
	// changes (alive, suspect, dead, left), often with memberlist's lock held: it must
	// not block or call the Pool.
	OnChange func(m Member, old string)
	// OnMessage, if set, receives the user messages other members send
	// with Send. It runs on memberlist's packet goroutine: keep it short.
	OnMessage func(msg []byte)
}

// Pool is this node's membership in the gossip pool.
type Pool struct {
	ml     *memberlist.Memberlist
	tr     *transport
	opts   Options
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// memberlist's Members() hands out pointers that it keeps mutating, so
	// the pool keeps its own copies, updated from memberlist's events.
	mu      sync.Mutex
	members map[string]Member
	joinErr string // the last join failure, reported once until it changes

	closeOnce sync.Once // Close may be called more than once
	closeErr  error
}

// Start binds the UDP side, joins the seeds it can reach and keeps
// re-joining the others in the background until Close.
func Start(ctx context.Context, opts Options) (*Pool, error) {
	if opts.Timeout <= 0 {
		// No default here: the daemons pass gear.failover.timeout, whose
		// default lives in config.Default.
		return nil, fmt.Errorf("gossip: Options.Timeout must be > 0 (the failover timeout), got %v", opts.Timeout)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tr, err := newTransport(opts.BindIP, opts.Port, opts.Streams)
	if tr != nil {
		tr.tls = opts.TLS
	}
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(opts.Meta)
	if err != nil {
		return nil, err
	}
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = opts.Name
	cfg.Transport = tr
	cfg.AdvertiseAddr = opts.BindIP
	cfg.AdvertisePort = opts.Port
	cfg.BindAddr = opts.BindIP
	cfg.BindPort = opts.Port
	cfg.Label = opts.Label
	if len(opts.Key) > 0 {
		cfg.SecretKey = opts.Key
	}
	Tune(cfg, opts.Timeout)
	// A worker restarted after a crash comes back under the same name on
	// a new port. memberlist refuses a known name at a new address unless
	// the old entry is dead for longer than this; 0 would mean never (until
	// the dead entry is reaped), keeping the restarted worker out of the
	// pool and so off the placement list.
	cfg.DeadNodeReclaimTime = time.Millisecond
	cfg.Delegate = &delegate{meta: meta, onMsg: opts.OnMessage}
	p := &Pool{tr: tr, opts: opts, members: map[string]Member{}}
	cfg.Alive = &aliveFilter{self: opts.Name, pool: p}
	cfg.Ping = p
	cfg.Logger = log.New(io.MultiWriter(suspicionWatch{p}, &logbridge.Writer{Log: opts.Logger, From: "memberlist"}), "", 0)
	cfg.Events = p
	ml, err := memberlist.Create(cfg)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("gossip: start: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p.ml, p.cancel = ml, cancel
	p.join()
	p.wg.Add(1)
	go p.rejoinLoop(ctx)
	return p, nil
}

// Tune sets memberlist's failure-detection and gossip timing from gear's
// failover timeout t. Start uses it; scripts/bench/gossip measures it.
//
// At the default t = 6s: probe every 0.75 s, probe timeout 0.375 s,
// suspicion multiplier 1, so a member that stays silent is suspected after
// one failed probe round and declared dead 1 x log10(N) probe intervals
// later unless it refutes (0.75 s below 10 members, 1.7 s at 200). A dead
// member is declared dead in about 3.3 s at 200: on average one probe
// interval until some member probes it, one probe round, then the
// suspicion (docs/BENCHMARKS.md, "Gossip pool at scale"). A member paused
// for 1 s is not: the earliest it can be declared dead is 1.5 s after the
// probe that found it silent, and once it runs again it answers and
// refutes within a few gossip rounds (measured: no dead declaration at
// 50-200 members, nor in test/'s 3-master pause test).
func Tune(cfg *memberlist.Config, t time.Duration) {
	// Probe often enough that a dead node is suspected within about a
	// quarter of the failover timeout (a wait to be probed, then a round).
	cfg.ProbeInterval = max(t/8, 200*time.Millisecond)
	cfg.ProbeTimeout = max(t/16, 100*time.Millisecond)
	// Suspicion lasts SuspicionMult x log10(N) probe intervals. memberlist
	// waits for k = SuspicionMult-2 confirmations from other members,
	// starting at SuspicionMaxTimeoutMult times that (Lifeguard); any
	// multiplier that asks for a confirmation (>= 3) is at least
	// 3 x 2.3 = 6.9 probe intervals at 200 members, which is what made a
	// dead member take 8 s to detect there. With 1 the suspicion is the
	// minimum from the start: 2.3 probe intervals at 200. (1 s probes with
	// multiplier 1 measured 4.4 s at 200; 0.5 s probes with multiplier 2
	// give the same suspicion as these 0.75 s ones with 1, for a third
	// more probes and a probe timeout of 0.25 s.)
	cfg.SuspicionMult = 1
	// memberlist LZW-compresses every packet by default: a fresh
	// compressor (a 64 KiB table) per packet made it and the garbage it
	// leaves about a third of the CPU of a 200-member pool, for packets
	// that fit one UDP datagram either way (the batching of gossip is by
	// uncompressed size). Receivers decode compressed packets whatever
	// this says, so mixed versions still talk.
	cfg.EnableCompression = false
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.PushPullInterval = max(t*2, 5*time.Second)
	cfg.TCPTimeout = max(t/2, time.Second)
}

func (p *Pool) self() string {
	return net.JoinHostPort(p.opts.BindIP, strconv.Itoa(p.opts.Port))
}

// missingSeeds are the configured masters that are not alive in our view.
func (p *Pool) missingSeeds() []string {
	var out []string
	for _, s := range p.opts.Seeds {
		if s != p.self() && !p.Alive(s) {
			out = append(out, s)
		}
	}
	return out
}

// NotifyJoin, NotifyLeave and NotifyUpdate implement
// memberlist.EventDelegate; memberlist calls them with its lock held, so
// the node is copied here.
func (p *Pool) NotifyJoin(n *memberlist.Node)   { p.record(n, StateAlive) }
func (p *Pool) NotifyUpdate(n *memberlist.Node) { p.record(n, StateAlive) }
func (p *Pool) NotifyLeave(n *memberlist.Node) {
	state := StateDead
	if n.State == memberlist.StateLeft {
		state = StateLeft
	}
	p.record(n, state)
}

func (p *Pool) record(n *memberlist.Node, state string) {
	m := Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), State: state, Since: time.Now()}
	_ = json.Unmarshal(n.Meta, &m.Meta)
	p.mu.Lock()
	old := p.members[n.Name].State
	if old == state {
		m.Since = p.members[n.Name].Since
	}
	p.members[n.Name] = m
	p.mu.Unlock()
	if p.opts.OnChange != nil && old != state {
		p.opts.OnChange(m, old)
	}
}

// memberlist has no event for suspicion, and the nodes its Members()
// returns are not safe to read. The pool learns of it from what memberlist
// does tell: its probe of a member failed (the "Suspect <name> has failed"
// line it logs when it marks the member suspect: suspicionWatch), and the
// member was heard from again (a direct ack: NotifyPingComplete; an alive
// message, which is how a suspect member refutes: aliveFilter). Suspicion
// that reaches this node only as other members' gossip is not seen here;
// the state is this node's own view, as the operator is told.
func (p *Pool) setSuspect(name string, suspect bool) {
	from, to := StateAlive, StateSuspect
	if !suspect {
		from, to = StateSuspect, StateAlive
	}
	p.mu.Lock()
	m, ok := p.members[name]
	changed := ok && m.State == from
	if changed {
		m.State, m.Since = to, time.Now()
		p.members[name] = m
	}
	p.mu.Unlock()
	if changed && p.opts.OnChange != nil {
		p.opts.OnChange(m, from)
	}
}

// AckPayload and NotifyPingComplete implement memberlist.PingDelegate.
func (p *Pool) AckPayload() []byte { return nil }
func (p *Pool) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	p.setSuspect(other.Name, false)
}

// suspicionWatch reads memberlist's log lines for the one that says this
// node has just marked a member suspect. The line is memberlist's
// (v0.7 state.go probeNode); TestSuspectState fails if it changes.
type suspicionWatch struct{ p *Pool }

func (w suspicionWatch) Write(b []byte) (int, error) {
	const pre, post = "memberlist: Suspect ", " has failed"
	s := string(b)
	if i := strings.Index(s, pre); i >= 0 {
		rest := s[i+len(pre):]
		if j := strings.Index(rest, post); j > 0 {
			w.p.setSuspect(rest[:j], true)
		}
	}
	return len(b), nil
}

func (p *Pool) join() {
	seeds := p.missingSeeds()
	if len(seeds) == 0 {
		return
	}
	_, err := p.ml.Join(seeds)
	p.reportJoin(seeds, err)
}

// reportJoin logs a failure to join configured seeds at warn level the
// first time it happens and whenever it changes (a wrong gossip key or a
// label mismatch shows here), and its end at info; the same failure
// repeated by the background re-join stays at debug.
func (p *Pool) reportJoin(seeds []string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	p.mu.Lock()
	last := p.joinErr
	p.joinErr = msg
	p.mu.Unlock()
	switch {
	case msg != "" && msg != last:
		p.opts.Logger.Warn("gossip: cannot join configured nodes; retrying in the background (check gear.gossip.key and the cluster label if they are up)", "seeds", seeds, "err", err)
	case msg != "":
		p.opts.Logger.Debug("gossip: join", "seeds", seeds, "err", err)
	case last != "":
		p.opts.Logger.Info("gossip: joined configured nodes", "seeds", seeds)
	}
}

func (p *Pool) rejoinLoop(ctx context.Context) {
	defer p.wg.Done()
	periodic.Every(ctx, max(p.opts.Timeout/4, 500*time.Millisecond), func(time.Time) { p.join() })
}

// Members returns every node this node knows of, itself included.
func (p *Pool) Members() []Member {
	p.mu.Lock()
	out := make([]Member, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, m)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns the node named name as this node sees it.
func (p *Pool) Member(name string) (Member, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[name]
	return m, ok
}

// Rejoin pushes this node's state to every seed at once, e.g. when a
// master says it does not see this node in the pool.
func (p *Pool) Rejoin() error {
	var seeds []string
	for _, s := range p.opts.Seeds {
		if s != p.self() {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return nil
	}
	_, err := p.ml.Join(seeds)
	return err
}

// Alive reports whether the node at addr (host:port) is alive in our view
// (a suspect member is still a member until it is declared dead).
func (p *Pool) Alive(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.members {
		if m.Addr == addr && (m.State == StateAlive || m.State == StateSuspect) {
			return true
		}
	}
	return false
}

// Send sends msg to the member at addr (host:port of its gossip port,
// which for a master is its one address) as a best-effort UDP user
// message: fast, encrypted like all gossip when a key is set, and lost
// without notice if the path is down. Callers that need it to arrive
// repeat it. The member must be known to the pool (alive or not).
func (p *Pool) Send(addr string, msg []byte) error {
	name := ""
	p.mu.Lock()
	for _, m := range p.members {
		if m.Addr == addr || m.Meta.API == addr {
			name, addr = m.Name, m.Addr
			break
		}
	}
	p.mu.Unlock()
	if name == "" {
		return fmt.Errorf("gossip: no member at %s in this node's view (has it joined the pool?)", addr)
	}
	return p.ml.SendToAddress(memberlist.Address{Addr: addr, Name: name}, msg)
}

// Close leaves the pool and stops the background work.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
		_ = p.ml.Leave(500 * time.Millisecond)
		p.closeErr = p.ml.Shutdown()
	})
	return p.closeErr
}

type delegate struct {
	meta  []byte
	onMsg func([]byte)
}

func (d *delegate) NodeMeta(limit int) []byte { return d.meta }

// NotifyMsg hands a user message to Options.OnMessage; memberlist reuses
// the buffer after the call, so it is copied.
func (d *delegate) NotifyMsg(b []byte) {
	if d.onMsg != nil && len(b) > 0 {
		d.onMsg(slices.Clone(b))
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// aliveFilter keeps nodes with unknown roles out of the pool (memberlist's
// Label already keeps other clusters out).
type aliveFilter struct {
	self string
	pool *Pool
}

func (a *aliveFilter) NotifyAlive(n *memberlist.Node) error {
	if n.Name == a.self {
		return nil
	}
	var m Meta
	if err := json.Unmarshal(n.Meta, &m); err != nil {
		return fmt.Errorf("gossip: node %s has no gear metadata", n.Name)
	}
	if m.Role != RoleMaster && m.Role != RoleWorker {
		return fmt.Errorf("gossip: node %s has role %q, want master or worker", n.Name, m.Role)
	}
	a.pool.setSuspect(n.Name, false)
	return nil
}

// transport is a memberlist.Transport over a netmux stream listener and a
// UDP socket on the same port number.
type transport struct {
	udp      *net.UDPConn
	streams  net.Listener
	tls      *tls.Config // dial streams with TLS (nil = plaintext)
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

func newTransport(ip string, port int, streams net.Listener) (*transport, error) {
	addr := &net.UDPAddr{IP: net.ParseIP(ip), Port: port}
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, netmux.ListenError(addr.String(), err)
	}
	t := &transport{
		udp: udp, streams: streams,
		packetCh: make(chan *memberlist.Packet, 256),
		streamCh: make(chan net.Conn, 16),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

func (t *transport) readPackets() {
	defer t.wg.Done()
	// One buffer for the largest datagram, and each packet copied out at
	// its size: a fresh 64 KiB buffer per packet (memberlist's own
	// transport does that) is cleared, kept by the packet, and collected,
	// for packets of ~1.4 KB.
	buf := make([]byte, 65536)
	for {
		n, from, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: slices.Clone(buf[:n]), From: from, Timestamp: ts}:
		case <-t.done:
			return
		}
	}
}

func (t *transport) acceptStreams() {
	defer t.wg.Done()
	for {
		c, err := t.streams.Accept()
		if err != nil {
			return
		}
		select {
		case t.streamCh <- c:
		case <-t.done:
			_ = c.Close()
			return
		}
	}
}

func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return nil, 0, fmt.Errorf("gossip: %q is not an IP address", ip)
	}
	return parsed, port, nil
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	if err != nil && t.isShutdown() {
		// memberlist's probe and gossip goroutines still send while it
		// shuts down, and logged each failed packet at ERROR on every
		// clean stop of a master or worker. A packet sent after the
		// shutdown is dropped, quietly: UDP would not promise it anyway.
		err = nil
	}
	return time.Now(), err
}

func (t *transport) isShutdown() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return netmux.DialTLS(context.Background(), addr, netmux.Gossip, timeout, t.tls)
}

func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *transport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		_ = t.udp.Close()
		_ = t.streams.Close()
	})
	return nil
}
