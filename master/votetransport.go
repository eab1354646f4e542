package master

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/hashicorp/raft"
)

// Vote requests: a master whose raft log cannot be written must not lead,
// and a vote must not be lost to a stale connection.
//
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
// voteTransport is raft's transport with two rules for vote requests.
//
// First, while the local log is broken (logStore.fail, until it is reopened) this master asks nobody
// for a vote or a pre-vote. Raft sees failed RPCs, counts them as refusals
// and stays a follower or candidate; with pre-vote its term does not grow,
// so it rejoins without disrupting the leader once the log works again.
// Votes it grants to others are unchanged: a master with a full disk still
// helps elect a healthy one. A single master never asks anyone, so it still
// leads (and refuses writes with "disk full") as before.
//
// Second, a vote request that fails on a pooled connection the peer had
// already closed (EOF, reset: the peer restarted since the connection was
// made) is sent again; raft's transport dropped that connection, so the
// next try takes another pooled one or dials. Raft itself sends each vote
// request once, and a vote lost that way cost a whole election round: in
// the failover bench, a survivor's campaign right after the other survivor
// had restarted lost its vote to such a connection, the other survivor
// campaigned in the same term, and the split vote waited for raft's
// election timer (1.9-3.8 s instead of 0.25 s, one round in ten). A vote
// request is safe to repeat: a voter grants the same candidate the same
// term again.
type voteTransport struct {
	*raft.NetworkTransport
	broken func() error // the log's problem, nil while it can be written
}

// staleTries bounds the sends of one vote request: one more than raft's
// pool holds connections per peer (MaxPool in startRaft).
const staleTries = 4

// staleConn says whether err is a connection the peer had closed.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// refuse is the error raft logs for each vote not asked for, nil while
// the log works.
func (g voteTransport) refuse() error {
	if err := g.broken(); err != nil {
		return fmt.Errorf("not asking for votes while this master's raft log cannot be written: %w", err)
	}
	return nil
}

// RequestVote implements raft.Transport.
func (g voteTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return g.ask(func() error { return g.NetworkTransport.RequestVote(id, target, args, resp) })
}

// RequestPreVote implements raft.WithPreVote.
func (g voteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return g.ask(func() error { return g.NetworkTransport.RequestPreVote(id, target, args, resp) })
}

// ask sends one vote request by send, under the two rules.
func (g voteTransport) ask(send func() error) error {
	if err := g.refuse(); err != nil {
		return err
	}
	err := send()
	for try := 1; try < staleTries && staleConn(err); try++ {
		err = send()
	}
	return err
}

var (
	_ raft.Transport   = voteTransport{}
	_ raft.WithPreVote = voteTransport{}
	_ raft.WithClose   = voteTransport{}
)
