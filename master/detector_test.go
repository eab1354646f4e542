package master

import (
	"slices"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // the fake clock
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const (
		a, b, c, d, e = "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000", "10.0.0.4:3000", "10.0.0.5:3000"
	)
	three := []string{a, b, c}
	five := []string{a, b, c, d, e}
	// silent is a verdict from `from` about leader a in term 7, first
	// heard at since ms and refreshed at ms.
	silent := func(from string, since, ms int) verdict {
		return verdict{From: from, Leader: a, Term: 7, Since: at(since), At: at(ms)}
	}
	base := func(self string, voters []string, now int, vs ...verdict) detectorInput {
		return detectorInput{
			Self: self, Leader: a, Term: 7, Voters: voters, Verdicts: vs, Now: at(now),
			TTL: 750 * time.Millisecond, Stagger: 200 * time.Millisecond, Backoff: time.Second,
		}
	}
	tests := []struct {
		name  string
		in    detectorInput
		want  action
		agree []string
	}{
		{"no verdicts: the leader is heard", base(b, three, 0), idle, nil},
		{"only the other follower judges it silent: we hear the leader", base(b, three, 100, silent(c, 0, 100)), idle, nil},
		{"one follower with a bad link: alone, never a majority", base(b, three, 100, silent(b, 0, 100)), wait, []string{b}},
		{"the same follower keeps judging for long: still alone", base(b, three, 60_000, silent(b, 0, 60_000)), wait, []string{b}},
		{"two of three agree: the first by address campaigns at once", base(b, three, 300, silent(b, 0, 300), silent(c, 100, 250)), campaign, []string{b, c}},
		{"two of three agree: the second waits its turn", base(c, three, 250, silent(b, 0, 250), silent(c, 100, 250)), wait, []string{b, c}},
		{"the second campaigns one stagger after the majority formed", base(c, three, 300, silent(b, 0, 300), silent(c, 100, 300)), campaign, []string{b, c}},
		{"a stale verdict does not count", base(b, three, 2000, silent(b, 0, 2000), silent(c, 100, 1200)), wait, []string{b}},
		{"a verdict refreshed just within the TTL counts", base(b, three, 2000, silent(b, 0, 2000), silent(c, 100, 1251)), campaign, []string{b, c}},
		{"a verdict about another term does not count", base(b, three, 300, silent(b, 0, 300), verdict{From: c, Leader: a, Term: 6, Since: at(0), At: at(300)}), wait, []string{b}},
		{"a verdict about another leader does not count", base(b, three, 300, silent(b, 0, 300), verdict{From: c, Leader: b, Term: 7, Since: at(0), At: at(300)}), wait, []string{b}},
		{"the leader's own word does not count", base(b, three, 300, silent(b, 0, 300), silent(a, 0, 300)), wait, []string{b}},
		{"a non-voter does not count", base(b, three, 300, silent(b, 0, 300), silent(d, 0, 300)), wait, []string{b}},
		{"a duplicate from one voter counts once", base(b, five, 300, silent(b, 0, 300), silent(c, 0, 300), silent(c, 10, 290)), wait, []string{b, c}},
		{"five voters: three agree, the first campaigns", base(b, five, 300, silent(b, 0, 300), silent(d, 50, 300), silent(e, 120, 300)), campaign, []string{b, d, e}},
		{"five voters: a lost voter does not delay the campaign", base(d, five, 300, silent(c, 0, 300), silent(d, 50, 300), silent(e, 120, 300)), wait, []string{c, d, e}},
		{"five voters: two agree is no majority", base(b, five, 300, silent(b, 0, 300), silent(c, 0, 300)), wait, []string{b, c}},
		{"the most recent log campaigns first, whatever its address", func() detectorInput {
			b0, c0 := silent(b, 0, 300), silent(c, 100, 300)
			b0.LogTerm, b0.LogIndex = 4, 6 // b was the old leader: behind
			c0.LogTerm, c0.LogIndex = 5, 8
			return base(c, three, 300, b0, c0)
		}(), campaign, []string{c, b}},
		{"with an older log, wait for the up-to-date one", func() detectorInput {
			b0, c0 := silent(b, 0, 250), silent(c, 100, 250)
			b0.LogTerm, b0.LogIndex = 5, 7
			c0.LogTerm, c0.LogIndex = 5, 8
			return base(b, three, 250, b0, c0)
		}(), wait, []string{c, b}},
		{"recently campaigned: back off", func() detectorInput {
			in := base(b, three, 300, silent(b, 0, 300), silent(c, 100, 300))
			in.LastCampaign = at(0)
			return in
		}(), wait, []string{b, c}},
		{"campaigned long ago: again", func() detectorInput {
			in := base(b, three, 3000, silent(b, 0, 3000), silent(c, 100, 3000))
			in.LastCampaign = at(1000)
			return in
		}(), campaign, []string{b, c}},
		{"we lead: nothing", func() detectorInput {
			in := base(a, three, 300, silent(b, 0, 300), silent(c, 0, 300))
			return in
		}(), idle, nil},
		{"no leader known: nothing (raft's own election runs)", func() detectorInput {
			in := base(b, three, 300, silent(b, 0, 300), silent(c, 0, 300))
			in.Leader = ""
			return in
		}(), idle, nil},
		{"not a voter: nothing", base(d, three, 300, silent(d, 0, 300), silent(b, 0, 300), silent(c, 0, 300)), idle, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.in)
			if got.Action != tt.want {
				t.Errorf("action = %v, want %v (agree %v, need %d, formed %v)", got.Action, tt.want, got.Agree, got.Need, got.Formed)
			}
			if !slices.Equal(got.Agree, tt.agree) {
				t.Errorf("agree = %v, want %v", got.Agree, tt.agree)
			}
		})
	}
}

// TestDecideOverTime steps the fake clock through a host loss seen by two
// followers, with probe results arriving as they would: the first
// campaigns as soon as the second's verdict arrives, the second only if
// no new leader emerged one stagger later, and a follower that hears the
// leader again (its verdict withdrawn) stops the campaign.
func TestDecideOverTime(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const l, b, c = "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000"
	book := map[string]verdict{}
	probe := func(from string, now time.Time, silentResult bool) {
		if !silentResult {
			delete(book, from)
			return
		}
		v, ok := book[from]
		if !ok {
			v = verdict{From: from, Leader: l, Term: 3, Since: now}
		}
		v.At = now
		book[from] = v
	}
	ask := func(self string, now time.Time) action {
		var vs []verdict
		for _, v := range book {
			vs = append(vs, v)
		}
		return decide(detectorInput{Self: self, Leader: l, Term: 3, Voters: []string{l, b, c}, Verdicts: vs, Now: now,
			TTL: 750 * time.Millisecond, Stagger: 200 * time.Millisecond, Backoff: time.Second}).Action
	}
	now := t0.Add(450 * time.Millisecond) // b's probe timed out
	probe(b, now, true)
	if got := ask(b, now); got != wait {
		t.Fatalf("b alone: %v, want wait", got)
	}
	now = now.Add(30 * time.Millisecond) // c's verdict arrives
	probe(c, now, true)
	if got := ask(b, now); got != campaign {
		t.Fatalf("b with c: %v, want campaign", got)
	}
	if got := ask(c, now); got != wait {
		t.Fatalf("c right after the majority formed: %v, want wait", got)
	}
	now = now.Add(250 * time.Millisecond)
	probe(b, now, true)
	probe(c, now, true)
	if got := ask(c, now); got != campaign {
		t.Fatalf("c a stagger later: %v, want campaign", got)
	}
	// The leader answers c again (it was a pause after all): c withdraws,
	// and b is alone again.
	probe(c, now, false)
	if got := ask(b, now); got != wait {
		t.Fatalf("b after c withdrew: %v, want wait", got)
	}
	if got := ask(c, now); got != idle {
		t.Fatalf("c after withdrawing: %v, want idle", got)
	}
}
