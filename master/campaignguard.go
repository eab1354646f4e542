package master

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// A master whose raft log cannot be written must not lead.
//
// Raft elects whoever has the most up-to-date log, and a master whose disk
// filled has a log as up to date as anyone's: it stopped at the entry it
// could not store, and so did the group. Left alone it keeps winning: it
// steps down because it cannot append its first entry as leader, its
// election timer fires (a follower that cannot store what the leader sends
// never counts that as contact), the peers grant its pre-vote because it was
// the leader they last knew, and it wins again. Every write forwarded to it
// in those short leaderships fails with "disk full", and the healthy
// majority rarely gets to lead.
//
// campaignGuard is raft's transport with one rule added: while the local log
// is broken (logStore.fail, until it is reopened) this master asks nobody
// for a vote or a pre-vote. Raft sees failed RPCs, counts them as refusals
// and stays a follower or candidate; with pre-vote its term does not grow,
// so it rejoins without disrupting the leader once the log works again.
// Votes it grants to others are unchanged: a master with a full disk still
// helps elect a healthy one. A single master never asks anyone, so it still
// leads (and refuses writes with "disk full") as before.
type campaignGuard struct {
	*raft.NetworkTransport
	broken func() error // the log's problem, nil while it can be written
}

// refuse is the error raft logs for each vote not asked for, nil while
// the log works.
func (g campaignGuard) refuse() error {
	if err := g.broken(); err != nil {
		return fmt.Errorf("not asking for votes while this master's raft log cannot be written: %w", err)
	}
	return nil
}

// RequestVote implements raft.Transport.
func (g campaignGuard) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if err := g.refuse(); err != nil {
		return err
	}
	return g.NetworkTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (g campaignGuard) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := g.refuse(); err != nil {
		return err
	}
	return g.NetworkTransport.RequestPreVote(id, target, args, resp)
}

var (
	_ raft.Transport   = campaignGuard{}
	_ raft.WithPreVote = campaignGuard{}
	_ raft.WithClose   = campaignGuard{}
)
