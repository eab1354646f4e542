package master

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRemovalRefusal(t *testing.T) {
	five := []string{"a:1", "b:1", "c:1", "d:1", "e:1"}
	up := func(addrs ...string) map[string]bool {
		m := map[string]bool{}
		for _, a := range addrs {
			m[a] = true
		}
		return m
	}
	cases := []struct {
		name    string
		voters  []string
		target  string
		reach   map[string]bool
		refused string // "" = allowed
	}{
		{"all up", five, "e:1", up(five...), ""},
		{"dead one removed, 4 left, 3 reachable", five, "e:1", up("a:1", "b:1", "c:1"), ""},
		{"4 left, only 2 reachable", five, "e:1", up("a:1", "b:1"), "a quorum of the new group needs 3"},
		{"3 voters, one dead, remove a live one", []string{"a:1", "b:1", "c:1"}, "b:1", up("a:1", "b:1"), "would leave 2 voters [a:1 c:1], of which only 1 are reachable"},
		{"3 voters, remove the dead one", []string{"a:1", "b:1", "c:1"}, "c:1", up("a:1", "b:1"), ""},
		{"last voter", []string{"a:1"}, "a:1", up("a:1"), "is the last voter"},
		{"a non-voter", []string{"a:1"}, "z:1", up(), ""},
	}
	for _, c := range cases {
		err := removalRefusal(c.voters, c.target, c.reach)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused) || !errors.Is(err, ErrConflict)):
			t.Errorf("%s: err = %v, want a conflict containing %q", c.name, err, c.refused)
		}
	}
}

func TestCaughtUpAndGroupLive(t *testing.T) {
	if !caughtUp(status{Leader: "l:1", Applied: 100}, "l:1", 100+promoteLag) {
		t.Error("a follower promoteLag behind is not caught up")
	}
	if caughtUp(status{Leader: "l:1", Applied: 100}, "l:1", 101+promoteLag) {
		t.Error("a follower more than promoteLag behind is caught up")
	}
	if caughtUp(status{Leader: "", Applied: 1000}, "l:1", 10) {
		t.Error("a master that does not follow this leader is caught up")
	}
	if groupLive(status{Term: 1}) {
		t.Error("a freshly bootstrapped peer (term 1, no leader, nothing committed) counts as a live group")
	}
	for _, st := range []status{{Term: 2}, {Term: 1, Leader: "a:1"}, {CommitIndex: 3}} {
		if !groupLive(st) {
			t.Errorf("%+v is not a live group", st)
		}
	}
}

func TestReconcileCommands(t *testing.T) {
	got := reconcileCommands([]string{"a:1", "b:1", "d:1"}, []string{"a:1", "b:1", "c:1"})
	want := []string{"gear masters add d:1", "gear masters remove c:1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := reconcileCommands([]string{"a:1"}, []string{"a:1"}); len(got) != 0 {
		t.Errorf("same lists: %q", got)
	}
}

// A master that is not listed in gear.cluster.masters, has no state and
// was not given -join is refused with the ways out; with -join it starts
// and waits to be added.
func TestUnlistedMasterNeedsJoin(t *testing.T) {
	opts := Options{IP: "127.0.0.1", Masters: []string{"127.0.0.1:1"}, DataDir: t.TempDir(), FailoverTimeout: 2 * time.Second, Logger: quietLogger()}
	m, err := New(context.Background(), opts)
	if err == nil {
		_ = m.Close()
		t.Fatal("an unlisted master without -join started")
	}
	if !strings.Contains(err.Error(), "is not listed in gear.cluster.masters") || !strings.Contains(err.Error(), "-join") {
		t.Errorf("error = %v, want one naming gear.cluster.masters and -join", err)
	}
	if ents, _ := os.ReadDir(opts.DataDir); len(ents) != 0 {
		t.Errorf("the refused master left %v in its data dir", ents)
	}
	opts.DataDir = t.TempDir()
	opts.Join = "127.0.0.1:1"
	m, err = New(context.Background(), opts)
	if err != nil {
		t.Fatalf("with -join: %v", err)
	}
	defer m.Close()
	if m.raft.resumed {
		t.Error("fresh data dir reported as resumed")
	}
	if ms, _, err := m.raft.members(); err != nil || len(ms) != 0 {
		t.Errorf("a joining master bootstrapped a configuration: %v, %v", ms, err)
	}
}
