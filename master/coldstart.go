package master

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// campaignOnColdStart shortens the first election of a freshly
// bootstrapped group. Raft's followers wait a randomised election timeout
// (T/4 to T/2, 1.5 to 3 s at the default T = 6 s) before the first
// campaign, although on a fresh group nobody can have been leader yet, so
// there is no leader to wait for. Here the lowest-addressed voter asks
// itself to campaign (TimeoutNow, as watchLeader does for a dead leader)
// as soon as a quorum of the voters (itself included) accepts TCP
// connections.
//
// It acts only while the node's log holds nothing but the bootstrap
// configuration (index <= 1), its term is still the bootstrap term (1),
// no leader is known and the node is a follower, so it campaigns at most
// once: a lost first election (a peer's raft was not ready yet) is left to
// raft's own timers, and a node whose data dir was wiped and that
// bootstrapped again cannot disturb a group with history (its one
// campaign, at term 2, is not above the group's term, so nobody steps
// down for it). It returns once a leader is known, the log has grown or it
// campaigned. It never weakens raft's safety: TimeoutNow only starts an
// election, which the voters decide as always.
func (n *raftNode) campaignOnColdStart(ctx context.Context, self string, log *slog.Logger) {
	const (
		tickEvery = 20 * time.Millisecond
		giveUp    = time.Minute
	)
	fresh := func() bool { return n.raft.LastIndex() <= 1 && n.raft.Stats()["term"] == "1" }
	if !fresh() {
		return // a group with history: raft's own timers
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if leader, _ := n.raft.LeaderWithID(); leader != "" || !fresh() || time.Since(start) > giveUp {
			return
		}
		voters := n.voters() // sorted
		if len(voters) == 0 || voters[0] != self {
			if len(voters) > 0 && !slices.Contains(voters, self) {
				return // not a voter of this group (e.g. joining)
			}
			continue // the lowest-addressed voter campaigns
		}
		if n.raft.State() != raft.Follower || reachable(voters, self, 100*time.Millisecond) < len(voters)/2+1 {
			continue
		}
		var resp raft.TimeoutNowResponse
		req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: []byte(self)}}
		if err := n.trans.TimeoutNow(raft.ServerID(self), raft.ServerAddress(self), req, &resp); err != nil {
			log.Warn("cold start: could not start the first election; raft's own timer will", "err", err)
			return
		}
		log.Info("cold start: a quorum of the masters is up and none is leader; campaigning at once", "voters", voters, "after", time.Since(start).Round(time.Millisecond))
		return
	}
}

// reachable counts the voters that accept a TCP connection within
// timeout, self counted without a dial.
func reachable(voters []string, self string, timeout time.Duration) int {
	n := 0
	for _, v := range voters {
		if v == self {
			n++
			continue
		}
		c, err := net.DialTimeout("tcp", v, timeout)
		if err == nil {
			_ = c.Close()
			n++
		}
	}
	return n
}
