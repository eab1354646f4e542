package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/logbridge"
	"github.com/gear-run/gear/pkg/netmux"
)

// raftTiming derives raft's timers from gear's failover timeout T.
//
// Followers start an election after HeartbeatTimeout (randomised up to 2x)
// without contact, and a leader steps down when it has not reached a quorum
// within LeaderLeaseTimeout. Both are T/4 (1.5 s at the 6 s default), so a
// leader paused for 1 s, or a machine busy for as long, causes no failover.
// A leader whose process died is noticed much sooner by the crash detector
// (see watchLeader), which does not wait for these timers.
func raftTiming(t time.Duration) (hb, election, lease time.Duration) {
	hb = max(t/4, 250*time.Millisecond)
	return hb, hb, hb
}

// streamLayer is raft's transport over the master's shared port.
// With gear.tls, tls is the node's client configuration: streams are
// mutual TLS after the prefix (see pkg/netmux).
type streamLayer struct {
	net.Listener
	tls *tls.Config
}

func (s streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return netmux.DialTLS(context.Background(), string(addr), netmux.Raft, timeout, s.tls)
}

type raftNode struct {
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	wal     *logStore // raft-wal, reopened in place after a full disk (diskfull.go)
	resumed bool      // the data dir held raft state at start
}

func (n *raftNode) close() {
	if n.raft != nil {
		_ = n.raft.Shutdown().Error()
	}
	if n.trans != nil {
		_ = n.trans.Close()
	}
	if n.wal != nil {
		_ = n.wal.Close()
	}
}

// startRaft opens the raft stores under dir and starts the node. On first
// start it bootstraps the configured masters as voters; afterwards the
// membership comes from the log on disk ("sticky", like SeaweedFS -mdir).
// hold, when set, is asked before bootstrapping: true means do not (the
// group exists already; see membership.go).
func startRaft(dir, self string, voters []string, timeout time.Duration, segSize int64, ln streamLayer, f *fsm, log *slog.Logger, hold func() bool) (*raftNode, error) {
	n := &raftNode{}
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	// raft logs at gear.log.level, its fields as slog attributes.
	hlog := logbridge.NewHCLog(log, "raft")
	wal, err := openLogStore(filepath.Join(dir, "wal"), segSize, log)
	if err != nil {
		return nil, err
	}
	n.wal = wal
	if err := checkLog(wal, filepath.Join(dir, "wal")); err != nil {
		n.close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hlog)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	hb, election, lease := raftTiming(timeout)
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(self)
	cfg.HeartbeatTimeout = hb
	cfg.ElectionTimeout = election
	cfg.LeaderLeaseTimeout = lease
	cfg.CommitTimeout = 20 * time.Millisecond
	cfg.SnapshotThreshold = 2048
	cfg.TrailingLogs = 4096
	cfg.Logger = hlog
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: ln, MaxPool: staleTries - 1, Timeout: 2 * time.Second, Logger: hlog,
	})
	existing, err := raft.HasExistingState(wal, wal, snaps)
	if err != nil {
		n.close()
		return nil, err
	}
	r, err := newRaft(filepath.Join(dir, "wal"), cfg, f, wal, wal, snaps, voteTransport{n.trans, wal.problem})
	if err != nil {
		n.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.resumed = existing
	if !existing && hold != nil && hold() {
		return n, nil
	}
	if !existing {
		var servers []raft.Server
		for _, v := range voters {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.close()
			return nil, fmt.Errorf("bootstrap raft with %v: %w", voters, err)
		}
		log.Info("bootstrapped the master group", "voters", voters)
	} else {
		log.Info("resumed the master group from the data dir", "dir", dir)
	}
	return n, nil
}

// voters returns the current voter addresses from the raft configuration.
func (n *raftNode) voters() []string {
	fut := n.raft.GetConfiguration()
	if fut.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range fut.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.Address))
		}
	}
	slices.Sort(out)
	return out
}

// watchLeader is the leader-loss detector. Raft's own timers must be long
// enough that a paused or slow leader is not deposed; but a lost leader
// can be told apart from a slow one by looking at its port. When a
// follower has missed a leader heartbeat (raft sends one every tenth of
// the heartbeat timeout) it opens a TCP connection to the leader's port:
//
//   - connected: the leader's kernel answers, so the machine is there and
//     the process is alive, perhaps paused or busy: no verdict, and raft's
//     timers stay the judge.
//   - refused: the process is gone (the crash path). That is conclusive:
//     the first surviving voter (by address order) asks itself to campaign
//     at once through raft's own TimeoutNow RPC, the one leadership
//     transfer uses, so that its vote request is not refused by peers that
//     still remember the dead leader; if it has not won shortly after, the
//     next survivor tries.
//   - no answer within the probe timeout: the leader's machine is silent
//     (lost, or cut off from this follower). This follower publishes its
//     verdict to the other voters through gossip (verdicts.go) and keeps
//     refreshing it while the silence lasts; a survivor campaigns the same
//     way only when a majority of the voters agree (decide, detector.go),
//     so one bad link or one starved prober never deposes a healthy
//     leader.
//
// Raft's ordinary election timer, with pre-vote, remains the last resort.
func (n *raftNode) watchLeader(ctx context.Context, self string, vs *verdicts, log *slog.Logger) {
	hb := n.raft.ReloadableConfig().HeartbeatTimeout
	// The leader sends a heartbeat every hb/10; one missed heartbeat is
	// enough to look, since the probe alone decides nothing.
	quiet := max(hb/10+50*time.Millisecond, 100*time.Millisecond)
	// A kernel completes a handshake in well under a millisecond on a LAN;
	// the timeout is generous so that a busy prober rarely judges wrong.
	probeTimeout := max(hb/6, 150*time.Millisecond)
	probeEvery := quiet / 2
	// A silent verdict is refreshed about every probeTimeout; missing
	// two refreshes makes it stale.
	ttl := 3 * probeTimeout
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	type probeResult struct {
		leader string
		term   uint64
		answer probeAnswer
	}
	probes := make(chan probeResult, 1)
	probing := false
	var lastProbe, lastCampaign time.Time
	var deadSince time.Time
	var deadLeader string
	var judged string // the leader we hold a silent verdict on
	var judgedTerm uint64
	// known is the last leader raft named. Raft forgets its leader when a
	// vote request with a newer term arrives, also from a survivor that
	// cannot win (its log is behind: a master restarted moments before the
	// leader died campaigns first in address order and is refused). Nobody
	// leads then, but the dead leader is still the one to judge: without
	// it this loop would stop probing, and the other survivors would wait
	// for raft's election timer (seen: 1.9-3.8 s instead of 0.25 s).
	var known string
	leaderNow := func() string {
		if l, _ := n.raft.LeaderWithID(); l != "" {
			known = string(l)
		}
		return known
	}
	withdraw := func() {
		if judged != "" {
			vs.withdraw(judged, judgedTerm, n.voters())
			judged, judgedTerm = "", 0
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-probes:
			probing = false
			if leaderNow() != p.leader || n.raft.CurrentTerm() != p.term || n.raft.State() != raft.Follower {
				continue // the world moved on while we probed
			}
			switch p.answer {
			case probeConnected:
				withdraw()
			case probeRefused:
				withdraw()
				if deadSince.IsZero() || deadLeader != p.leader {
					deadSince, deadLeader = time.Now(), p.leader
					log.Warn("leader's port refuses connections: its process is gone; starting an election", "leader", p.leader)
				}
			case probeSilent:
				if judged != p.leader || judgedTerm != p.term {
					log.Warn("leader's machine does not answer; asking the other masters whether they find it silent too", "leader", p.leader, "term", p.term, "probe_timeout", probeTimeout)
				}
				judged, judgedTerm = p.leader, p.term
				lt, li := n.logPosition()
				vs.judge(p.leader, p.term, lt, li, n.voters())
			}
			continue
		case <-tick.C:
		}
		if n.raft.State() != raft.Follower {
			deadSince = time.Time{}
			withdraw()
			continue
		}
		leader := leaderNow()
		term := n.raft.CurrentTerm()
		if leader == "" || leader == self || time.Since(n.raft.LastContact()) < quiet {
			if leader != deadLeader {
				deadSince = time.Time{}
			}
			withdraw()
			continue
		}
		if judged != "" && (judged != leader || judgedTerm != term) {
			withdraw()
		}
		if deadSince.IsZero() || leader != deadLeader {
			deadSince = time.Time{}
			if !probing && time.Since(lastProbe) >= probeEvery {
				probing, lastProbe = true, time.Now()
				go func() { probes <- probeResult{leader, term, probe(leader, probeTimeout)} }()
			}
			if judged == "" {
				continue
			}
			voters := n.voters()
			out := decide(detectorInput{
				Self: self, Leader: leader, Term: term, Voters: voters, Verdicts: vs.all(), Now: time.Now(),
				TTL: ttl, Stagger: quiet, LastCampaign: lastCampaign, Backoff: time.Duration(len(voters)) * 2 * quiet,
			})
			if out.Action != campaign {
				continue
			}
			log.Warn("a majority of the masters find the leader's machine silent; starting an election", "leader", leader, "term", term, "agree", out.Agree, "need", out.Need)
			n.timeoutNow(self, log)
			lastCampaign = time.Now()
			continue
		}
		var survivors []string
		for _, v := range n.voters() {
			if v != leader {
				survivors = append(survivors, v)
			}
		}
		rank := slices.Index(survivors, self)
		if rank < 0 {
			continue
		}
		// Rank 0 campaigns at once; the next one only if no leader emerged.
		if time.Since(deadSince) < time.Duration(rank)*quiet {
			continue
		}
		n.timeoutNow(self, log)
		deadSince = time.Now().Add(time.Duration(len(survivors)) * 2 * quiet) // back off before trying again
	}
}

// logPosition is the term and index of this master's last log entry.
func (n *raftNode) logPosition() (term, index uint64) {
	term, _ = strconv.ParseUint(n.raft.Stats()["last_log_term"], 10, 64)
	return term, n.raft.LastIndex()
}

// timeoutNow makes this master campaign at once, skipping pre-vote and
// the peers' "we still have a leader" check, as a leadership transfer does.
func (n *raftNode) timeoutNow(self string, log *slog.Logger) {
	if err := n.wal.problem(); err != nil {
		log.Warn("not starting an election: this master's raft log cannot be written; another master will", "err", err)
		return
	}
	var resp raft.TimeoutNowResponse
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: []byte(self)}}
	if err := n.trans.TimeoutNow(raft.ServerID(self), raft.ServerAddress(self), req, &resp); err != nil {
		log.Warn("could not start the election", "err", err)
	}
}

type probeAnswer int

const (
	probeConnected probeAnswer = iota // the leader's kernel completed the handshake
	probeRefused                      // nothing listens: the process is gone
	probeSilent                       // no answer within the timeout
)

// probe opens (and closes) one TCP connection to addr.
func probe(addr string, timeout time.Duration) probeAnswer {
	c, err := net.DialTimeout("tcp", addr, timeout)
	switch {
	case err == nil:
		_ = c.Close()
		return probeConnected
	case errors.Is(err, syscall.ECONNREFUSED):
		return probeRefused
	default:
		return probeSilent
	}
}
