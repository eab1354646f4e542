package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
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
type streamLayer struct {
	net.Listener
}

func (s streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return netmux.Dial(context.Background(), string(addr), netmux.Raft, timeout)
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
func startRaft(dir, self string, voters []string, timeout time.Duration, segSize int64, ln net.Listener, f *fsm, log *slog.Logger, hold func() bool) (*raftNode, error) {
	n := &raftNode{}
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: &logbridge.Writer{Log: log, From: "raft"}})
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
		Stream: streamLayer{ln}, MaxPool: 3, Timeout: 2 * time.Second, Logger: hlog,
	})
	existing, err := raft.HasExistingState(wal, wal, snaps)
	if err != nil {
		n.close()
		return nil, err
	}
	r, err := newRaft(filepath.Join(dir, "wal"), cfg, f, wal, wal, snaps, n.trans)
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

// watchLeader is the crash detector. Raft's own timers must be long enough
// that a paused or slow leader is not deposed; but a leader whose process
// died can be told apart from a slow one: its port refuses connections
// (the kernel answers for a paused process, not for a dead one). When a
// follower has missed a leader heartbeat (raft sends one every tenth of
// the heartbeat timeout) and the leader's port refuses a connection, the
// first surviving voter (by address order) asks itself to campaign at once
// through raft's own TimeoutNow RPC, the one leadership transfer uses, so
// that its vote request is not refused by peers that still remember the
// dead leader. If it has not won shortly after, the next survivor tries,
// and raft's ordinary election timer remains the last resort. A
// partitioned leader (which neither answers nor refuses) is left to that
// timer.
func (n *raftNode) watchLeader(ctx context.Context, self string, log *slog.Logger) {
	hb := n.raft.ReloadableConfig().HeartbeatTimeout
	// The leader sends a heartbeat every hb/10; one missed heartbeat is
	// enough to look, since the probe only acts on a refused connection,
	// which a live (even a paused) leader never gives.
	quiet := max(hb/10+50*time.Millisecond, 100*time.Millisecond)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var deadSince time.Time
	var deadLeader string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n.raft.State() != raft.Follower {
			deadSince = time.Time{}
			continue
		}
		leaderAddr, _ := n.raft.LeaderWithID()
		leader := string(leaderAddr)
		if leader == "" || leader == self || time.Since(n.raft.LastContact()) < quiet {
			if leader != deadLeader {
				deadSince = time.Time{}
			}
			continue
		}
		if deadSince.IsZero() || leader != deadLeader {
			if !refused(leader) {
				continue
			}
			deadSince, deadLeader = time.Now(), leader
			log.Warn("leader's port refuses connections: its process is gone; starting an election", "leader", leader)
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
		var resp raft.TimeoutNowResponse
		req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: []byte(self)}}
		if err := n.trans.TimeoutNow(raft.ServerID(self), raft.ServerAddress(self), req, &resp); err != nil {
			log.Warn("could not start the election", "err", err)
		}
		deadSince = time.Now().Add(time.Duration(len(survivors)) * 2 * quiet) // back off before trying again
	}
}

// refused reports whether addr actively refuses TCP connections.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
