package master

// Membership changes: one server at a time, through raft's configuration.
//
//   - `gear masters add HOST:PORT` (or a master started with -join) adds the
//     new master as a non-voter. It catches up from a snapshot and the log;
//     the leader's promoter makes it a voter once its applied index is
//     within promoteLag of the leader's commit index.
//   - `gear masters remove HOST:PORT` removes a master, also a dead one. A
//     removal is refused when fewer reachable voters than a majority of the
//     new configuration would remain.
//   - A master with a fresh data dir does not bootstrap a configuration of
//     its own while a listed peer already has a live group (holdBootstrap):
//     it waits to be added (or, listed in the group's configuration, is
//     simply caught up by the leader).
//   - At start, a master whose gear.cluster.masters differs from the
//     membership stored in its data dir says so, with both lists and the
//     commands that reconcile them. It acts on neither by itself.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/periodic"
)

// promoteLag is how far (in log entries) a non-voter's applied index may
// trail the leader's commit index when it is promoted.
const promoteLag = 64

// ErrNoSuchMaster: the address is not in the masters' configuration.
var ErrNoSuchMaster = errors.New("no such master")

// member is one server of the raft configuration.
type member struct {
	Addr     string
	Suffrage string // "voter" | "nonvoter"
}

func suffrageName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "nonvoter"
}

// members returns the raft configuration, sorted by address, and its index.
func (n *raftNode) members() ([]member, uint64, error) {
	fut := n.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, 0, err
	}
	var out []member
	for _, s := range fut.Configuration().Servers {
		out = append(out, member{Addr: string(s.Address), Suffrage: suffrageName(s.Suffrage)})
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.Addr, b.Addr) })
	return out, fut.Index(), nil
}

// peerStatus asks a master for its own status (with the cluster token:
// every route but /ecv needs it).
func (m *Master) peerStatus(ctx context.Context, addr string, timeout time.Duration) (status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st status
	err := getJSON(ctx, &http.Client{Transport: m.peerTransport()}, m.scheme()+"://"+addr+"/api/v1/status", m.opts.Token, &st)
	return st, err
}

// holdBootstrap decides, for a master with a fresh data dir, whether it
// must not bootstrap the configured masters: true when any listed peer
// already has a live group (a leader, a term past the bootstrap or a
// committed entry). Peers that are down or as fresh as this one do not
// hold it: masters started together for the first time bootstrap the same
// configuration, which is safe.
func (m *Master) holdBootstrap() bool {
	peers := slices.DeleteFunc(slices.Clone(m.opts.Masters), func(p string) bool { return p == m.self })
	if m.opts.Join != "" {
		m.log.Info("fresh data dir and -join: not bootstrapping; asking the group to add this master", "join", m.opts.Join)
		return true
	}
	type answer struct {
		addr string
		st   status
		err  error
	}
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Short: peers that are down refuse at once, and a peer
			// still starting serves its status within moments.
			st, err := m.peerStatus(context.Background(), p, 500*time.Millisecond)
			answers[i] = answer{p, st, err}
		}()
	}
	wg.Wait()
	for _, a := range answers {
		if a.err != nil || !groupLive(a.st) {
			continue
		}
		m.inGroup = slices.Contains(a.st.Voters, m.self) || slices.Contains(a.st.Nonvoters, m.self)
		if slices.Contains(a.st.Voters, m.self) {
			// A voter that lost its data may have voted in a term it
			// no longer remembers: raft's safety assumes it did not.
			m.log.Warn("fresh data dir, and the running group lists this master as a voter: not bootstrapping; the leader catches it up. If this master had a data dir before (lost or wiped), remove it and add it again to be safe: gear masters remove "+m.self+"; gear masters add "+m.self,
				"peer", a.addr, "leader", a.st.Leader)
		} else if slices.Contains(a.st.Nonvoters, m.self) {
			m.log.Info("fresh data dir, and the group has added this master: not bootstrapping; the leader catches it up", "peer", a.addr, "leader", a.st.Leader)
		} else {
			m.log.Warn("fresh data dir, and the group exists already: not bootstrapping a group of its own; this master waits to be added: run `gear masters add "+m.self+"` (or start it with -join "+a.addr+")",
				"peer", a.addr, "leader", a.st.Leader, "voters", a.st.Voters)
		}
		return true
	}
	return false
}

func errNotListed(self string, masters []string) error {
	return fmt.Errorf("this master (%s) is not listed in gear.cluster.masters %v: add it there, start it with the -ip and -port it is listed under, or start it with -join ANY_MASTER to be added to a running group", self, masters)
}

// hasRaftState reports whether a master's raft dir holds anything (a
// cheap look before the stores are opened; startRaft decides for real).
func hasRaftState(dir string) bool {
	for _, sub := range []string{"wal", "snapshots"} {
		if ents, err := os.ReadDir(filepath.Join(dir, sub)); err == nil && len(ents) > 0 {
			return true
		}
	}
	return false
}

// groupLive reports whether a peer's status shows a group past its
// bootstrap: a leader, a term past the first, or a committed entry. A peer
// as fresh as a starting master (bootstrapped, no election yet) does not.
func groupLive(st status) bool {
	return st.Leader != "" || st.Term > 1 || st.CommitIndex > 0
}

// reconcileCommands lists the commands that turn the stored membership
// into the configured one, one master at a time: adds first, so that the
// group never shrinks below what both lists hold.
func reconcileCommands(conf, stored []string) []string {
	var cmds []string
	for _, c := range conf {
		if !slices.Contains(stored, c) {
			cmds = append(cmds, "gear masters add "+c)
		}
	}
	for _, s := range stored {
		if !slices.Contains(conf, s) {
			cmds = append(cmds, "gear masters remove "+s)
		}
	}
	return cmds
}

// caughtUp reports whether a non-voter whose own status is st may be
// promoted by leader, whose commit index is commit: it follows this leader
// and has applied up to promoteLag entries short of commit.
func caughtUp(st status, leader string, commit uint64) bool {
	return st.Leader == leader && st.Applied+promoteLag >= commit
}

// removalRefusal says why removing target from voters would lose the
// quorum, given which masters answer; nil when the removal is safe. A
// non-voter's removal never is refused (pass voters without it).
func removalRefusal(voters []string, target string, reachable map[string]bool) error {
	var rest, reach, unreach []string
	for _, v := range voters {
		if v == target {
			continue
		}
		rest = append(rest, v)
		if reachable[v] {
			reach = append(reach, v)
		} else {
			unreach = append(unreach, v)
		}
	}
	if !slices.Contains(voters, target) {
		return nil
	}
	if len(rest) == 0 {
		return fmt.Errorf("%w: %s is the last voter; a group needs at least one master", ErrConflict, target)
	}
	if need := len(rest)/2 + 1; len(reach) < need {
		return fmt.Errorf("%w: removing %s would leave %d voters %v, of which only %d are reachable %v (unreachable: %v); a quorum of the new group needs %d, so the group would stop taking writes. Bring the unreachable masters back first, or remove a dead one first (one at a time)",
			ErrConflict, target, len(rest), rest, len(reach), reach, unreach, need)
	}
	return nil
}

// checkMembership compares gear.cluster.masters with the membership stored
// in the data dir and warns, with both lists and the commands that
// reconcile them, when they differ. The stored membership is used.
func (m *Master) checkMembership() {
	stored, _, err := m.raft.members()
	if err != nil || len(stored) == 0 {
		return
	}
	var storedAddrs []string
	for _, s := range stored {
		storedAddrs = append(storedAddrs, s.Addr)
	}
	conf := slices.Sorted(slices.Values(m.opts.Masters))
	if slices.Equal(conf, storedAddrs) {
		return
	}
	cmds := reconcileCommands(conf, storedAddrs)
	m.log.Warn(fmt.Sprintf("gear.cluster.masters differs from the membership stored in the data dir; the stored membership is used, and nothing is changed by itself. To reconcile, either run (one at a time): %s; or edit gear.cluster.masters on every node to list %s",
		strings.Join(cmds, "; "), quoteList(storedAddrs)), "configured", conf, "stored", storedAddrs)
}

func quoteList(addrs []string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// promoteLoop runs on every master; while it leads, it promotes non-voters
// that have caught up.
func (m *Master) promoteLoop(ctx context.Context) {
	periodic.Every(ctx, 250*time.Millisecond, func(time.Time) {
		if m.isLeader() {
			m.promoteCaughtUp(ctx)
		}
	})
}

// promoteCaughtUp makes the first non-voter that has caught up a voter
// (one configuration change at a time).
func (m *Master) promoteCaughtUp(ctx context.Context) {
	ms, idx, err := m.raft.members()
	if err != nil {
		return
	}
	for _, s := range ms {
		if s.Suffrage != "nonvoter" {
			continue
		}
		st, err := m.peerStatus(ctx, s.Addr, 500*time.Millisecond)
		if err != nil {
			continue
		}
		commit := m.raft.raft.CommitIndex()
		if !caughtUp(st, m.self, commit) {
			continue
		}
		if err := m.raft.raft.AddVoter(raft.ServerID(s.Addr), raft.ServerAddress(s.Addr), idx, 10*time.Second).Error(); err != nil {
			m.log.Warn("could not promote a caught-up master to voter; retrying", "promote", s.Addr, "err", err)
			return
		}
		m.log.Info("master caught up and is now a voter", "promoted", s.Addr, "applied", st.Applied, "commit", commit)
		return // one change at a time
	}
}

// handleAddMaster adds a master as a non-voter and waits (a while) for
// the promoter to make it a voter.
func (m *Master) handleAddMaster(w http.ResponseWriter, r *http.Request) {
	var req cluster.MemberRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if _, _, err := config.ParseHostPort(req.Addr); err != nil {
		writeError(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return
	}
	ms, idx, err := m.raft.members()
	if err != nil {
		writeError(w, err)
		return
	}
	i := slices.IndexFunc(ms, func(s member) bool { return s.Addr == req.Addr })
	if i < 0 {
		if err := m.raft.raft.AddNonvoter(raft.ServerID(req.Addr), raft.ServerAddress(req.Addr), idx, 10*time.Second).Error(); err != nil {
			writeError(w, m.raftError(err))
			return
		}
		m.log.Info("master added as a non-voter; it becomes a voter once it has caught up", "added", req.Addr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, _, err := m.raft.members()
		if err == nil {
			if i := slices.IndexFunc(ms, func(s member) bool { return s.Addr == req.Addr }); i >= 0 && ms[i].Suffrage == "voter" {
				writeJSON(w, m.memberChange(req.Addr, "voter", ms))
				return
			}
		}
		if time.Now().After(deadline) || r.Context().Err() != nil {
			res := m.memberChange(req.Addr, "nonvoter", ms)
			res.Message = fmt.Sprintf("%s is a non-voter that has not caught up yet: is it running? Start it with bin/master -ip HOST -port PORT (a fresh data dir is fine); it becomes a voter by itself once it has caught up (watch gear masters)", req.Addr)
			writeJSON(w, res)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *Master) memberChange(addr, suffrage string, ms []member) cluster.MemberChange {
	res := cluster.MemberChange{Addr: addr, Suffrage: suffrage, Voters: []string{}, Nonvoters: []string{}}
	for _, s := range ms {
		if s.Suffrage == "voter" {
			res.Voters = append(res.Voters, s.Addr)
		} else {
			res.Nonvoters = append(res.Nonvoters, s.Addr)
		}
	}
	return res
}

// raftError turns a raft error of a configuration change into one that
// says what to do.
func (m *Master) raftError(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrEnqueueTimeout) {
		return fmt.Errorf("%w: %s", ErrNoLeader, m.quorumReport())
	}
	if strings.Contains(err.Error(), "configuration changed since") {
		return fmt.Errorf("%w: the masters' configuration changed meanwhile; retry", ErrConflict)
	}
	return err
}

// handleRemoveMaster removes a master from the configuration, refusing a
// removal that would leave fewer reachable voters than a quorum of the new
// configuration.
func (m *Master) handleRemoveMaster(w http.ResponseWriter, r *http.Request) {
	var req cluster.MemberRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	ms, idx, err := m.raft.members()
	if err != nil {
		writeError(w, err)
		return
	}
	i := slices.IndexFunc(ms, func(s member) bool { return s.Addr == req.Addr })
	if i < 0 {
		var all []string
		for _, s := range ms {
			all = append(all, s.Addr)
		}
		writeError(w, fmt.Errorf("%w: %s is not one of the masters %v (see gear masters)", ErrNoSuchMaster, req.Addr, all))
		return
	}
	var voters []string
	for _, s := range ms {
		if s.Suffrage == "voter" {
			voters = append(voters, s.Addr)
		}
	}
	reach, _ := m.reachable(r.Context(), slices.DeleteFunc(slices.Clone(voters), func(v string) bool { return v == req.Addr }))
	ok := map[string]bool{}
	for _, a := range reach {
		ok[a] = true
	}
	if err := removalRefusal(voters, req.Addr, ok); err != nil {
		writeError(w, err)
		return
	}
	if err := m.raft.raft.RemoveServer(raft.ServerID(req.Addr), idx, 10*time.Second).Error(); err != nil {
		writeError(w, m.raftError(err))
		return
	}
	m.log.Info("master removed from the group", "removed", req.Addr, "was", ms[i].Suffrage)
	after, _, _ := m.raft.members()
	res := m.memberChange(req.Addr, "removed", after)
	res.Message = fmt.Sprintf("stop the master on %s if it still runs (its data dir is no longer used; start it with a fresh one to add it again), and take it out of gear.cluster.masters on every node", req.Addr)
	writeJSON(w, res)
}

// reachable splits addrs into masters that answer (this one always does)
// and those that do not.
func (m *Master) reachable(ctx context.Context, addrs []string) (yes, no []string) {
	ok := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		if a == m.self {
			ok[i] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := m.peerStatus(ctx, a, time.Second)
			ok[i] = err == nil && st.StorageError == ""
		}()
	}
	wg.Wait()
	for i, a := range addrs {
		if ok[i] {
			yes = append(yes, a)
		} else {
			no = append(no, a)
		}
	}
	return yes, no
}

// joinLoop asks the master given with -join to add this one, until it has
// (a fresh master started with -join).
func (m *Master) joinLoop(ctx context.Context) {
	if m.opts.Join == "" || m.raft.resumed {
		return
	}
	body, _ := json.Marshal(cluster.MemberRequest{Addr: m.self})
	for {
		ms, _, err := m.raft.members()
		if err == nil && slices.ContainsFunc(ms, func(s member) bool { return s.Addr == m.self && s.Suffrage == "voter" }) {
			return
		}
		err = m.askJoin(ctx, body)
		if err == nil {
			continue // check the configuration again
		}
		m.log.Warn("could not join the group yet; retrying", "join", m.opts.Join, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (m *Master) askJoin(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", m.scheme()+"://"+m.opts.Join+"/api/v1/masters/add", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if m.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+m.opts.Token)
	}
	resp, err := (&http.Client{Transport: m.peerTransport()}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res cluster.MemberChange
	if resp.StatusCode != http.StatusOK {
		var eb cluster.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return fmt.Errorf("%s: %s", resp.Status, eb.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return err
	}
	m.log.Info("asked the group to add this master", "join", m.opts.Join, "suffrage", res.Suffrage)
	if res.Suffrage != "voter" {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
