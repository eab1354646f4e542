package master

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// The host-loss detector: when does a follower campaign because the
// leader's machine went silent?
//
// Every follower judges the leader on its own (see watchLeader): after one
// missed heartbeat it opens a TCP connection to the leader's port. A live
// leader, and a paused one too, completes the handshake (the kernel does
// that, not the process); a dead process's port refuses, which is
// conclusive on its own (the crash path); a machine that is gone, or cut
// off, answers nothing until the probe times out. That last verdict,
// "silent", may also come from a bad link between this follower and the
// leader, or from a prober starved of CPU, so one master's "silent" never
// deposes a leader: the masters share their verdicts through the gossip
// pool (verdicts.go), and decide below campaigns only when a majority of
// the voters hold a fresh "silent" verdict about the same leader in the
// same term. The campaign goes through raft's TimeoutNow, which skips
// pre-vote, so a false verdict would cost an election: hence the majority.
//
// decide is pure: no clock, no goroutine, no network. watchLeader feeds it
// the verdicts it knows (its own included) with the times they arrived on
// its own monotonic clock, and applies the answer.

// verdict is one voter's judgement that the leader is silent.
type verdict struct {
	From   string    // the voter that judged
	Leader string    // the leader it judged
	Term   uint64    // the term it judged it in
	Since  time.Time // first heard of, without a break, on the deciding master's clock
	At     time.Time // last refreshed, on the deciding master's clock
	// The judging voter's last log entry (term, index): the voter with the
	// most recent log campaigns first, since the others would refuse a
	// candidate whose log is behind theirs.
	LogTerm, LogIndex uint64
}

// action is what decide tells the follower to do.
type action int

const (
	idle     action = iota // no verdict of ours, nothing to do
	wait                   // we judge the leader silent, but no majority (yet), or not our turn
	campaign               // start an election now (TimeoutNow)
)

func (a action) String() string {
	return [...]string{"idle", "wait", "campaign"}[a]
}

// detectorInput is everything decide looks at.
type detectorInput struct {
	Self     string   // this master
	Leader   string   // the leader this master follows
	Term     uint64   // this master's current term
	Voters   []string // the voters, the leader included
	Verdicts []verdict
	Now      time.Time
	// TTL: a verdict not refreshed within it is stale and does not count.
	TTL time.Duration
	// Stagger: the agreeing voters campaign one after the other, most
	// recent log first (then by address), the k-th one k*Stagger after the
	// majority formed, so that they do not split the vote and the next
	// one tries if one could not win.
	Stagger time.Duration
	// LastCampaign is when this master last campaigned (zero: never);
	// it does not campaign again within Backoff of it.
	LastCampaign time.Time
	Backoff      time.Duration
}

// outcome is decide's answer, with what it was based on, for the logs.
type outcome struct {
	Action action
	Agree  []string  // voters with a fresh "silent" verdict, in campaign order
	Need   int       // how many make a majority
	Formed time.Time // when the majority formed (zero if none)
}

// decide says whether this follower campaigns against a silent leader.
func decide(in detectorInput) outcome {
	out := outcome{Need: len(in.Voters)/2 + 1}
	if in.Leader == "" || in.Leader == in.Self || !slices.Contains(in.Voters, in.Self) {
		return out
	}
	latest := map[string]verdict{}
	for _, v := range in.Verdicts {
		if v.Leader != in.Leader || v.Term != in.Term || v.From == in.Leader || !slices.Contains(in.Voters, v.From) {
			continue
		}
		if in.Now.Sub(v.At) >= in.TTL || v.Since.After(v.At) {
			continue
		}
		if old, ok := latest[v.From]; !ok || v.At.After(old.At) {
			latest[v.From] = v
		}
	}
	if _, ok := latest[in.Self]; !ok {
		return out
	}
	out.Action = wait
	for from := range latest {
		out.Agree = append(out.Agree, from)
	}
	slices.SortFunc(out.Agree, func(a, b string) int {
		va, vb := latest[a], latest[b]
		if c := cmp.Compare(vb.LogTerm, va.LogTerm); c != 0 {
			return c
		}
		if c := cmp.Compare(vb.LogIndex, va.LogIndex); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if len(out.Agree) < out.Need {
		return out
	}
	var since []time.Time
	for _, v := range latest {
		since = append(since, v.Since)
	}
	slices.SortFunc(since, func(a, b time.Time) int { return a.Compare(b) })
	out.Formed = since[out.Need-1]
	rank := slices.Index(out.Agree, in.Self)
	if in.Now.Before(out.Formed.Add(time.Duration(rank) * in.Stagger)) {
		return out
	}
	if !in.LastCampaign.IsZero() && in.Now.Sub(in.LastCampaign) < in.Backoff {
		return out
	}
	out.Action = campaign
	return out
}
