package master

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The leader's process dies (its port refuses) and, before the survivors
// have judged it, a vote request with a newer term reaches them from a
// candidate that cannot win, as when a master restarted a moment earlier
// campaigns first with a log that is behind. Raft then forgets its leader
// on both survivors. They still judge the dead leader and one of them
// campaigns at once: a new leader well before raft's own election timer
// (T/4 = 10 s at T = 40 s). Before, the survivors stopped probing as soon
// as raft named no leader, and waited for that timer.
func TestSurvivorsCampaignAfterAStaleVoteRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft and gossip")
	}
	const timeout = 40 * time.Second
	ms := startMasters(t, 3, timeout, nil)
	lead := waitLeader(t, ms)
	survivors := followers(ms, lead)
	waitUntil(t, 10*time.Second, "the followers to know the leader", func() bool {
		for _, m := range survivors {
			if l, _ := m.raft.raft.LeaderWithID(); string(l) != lead.Addr() || m.raft.raft.AppliedIndex() < lead.raft.raft.AppliedIndex() {
				return false
			}
		}
		return true
	})
	// Right after the leader dies, each survivor gets a vote request in the
	// next term, as from the other one campaigning with an empty log
	// (refused: it cannot win).
	killLeaderWantQuickElection(t, lead, survivors, timeout, func() {
		for i, m := range survivors {
			other := survivors[1-i]
			req := &raft.RequestVoteRequest{
				RPCHeader:          raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(other.Addr()), Addr: []byte(other.Addr())},
				Term:               m.raft.raft.CurrentTerm() + 1,
				LeadershipTransfer: true,
			}
			var resp raft.RequestVoteResponse
			if err := other.raft.trans.RequestVote(raft.ServerID(m.Addr()), raft.ServerAddress(m.Addr()), req, &resp); err != nil {
				t.Fatalf("vote request to %s: %v", m.Addr(), err)
			}
			if resp.Granted {
				t.Fatalf("%s granted a vote to a candidate with an empty log", m.Addr())
			}
			if l, _ := m.raft.raft.LeaderWithID(); l != "" {
				t.Fatalf("%s still names leader %s after a vote request with a newer term; the test no longer sets up what it means to", m.Addr(), l)
			}
		}
	})
}
