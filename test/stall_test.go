package test

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// A write the leader appended but can never commit (its followers are
// frozen) stalls its commit index: `gear masters` must say so instead of
// looking healthy, and stop saying so once the entry is settled.
func TestMastersReportAStalledCommitIndex(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	var frozen []string
	for _, m := range c.masters {
		if m != leader {
			frozen = append(frozen, c.masterName(m))
		}
	}
	thaw := func() {
		for _, name := range frozen {
			c.kill(name, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw) // runs before stopAll, which was registered first
	for _, name := range frozen {
		c.kill(name, syscall.SIGSTOP)
	}
	// A write it can only append: it fails after the apply timeout.
	if _, _, code := c.gear("-master", leader, "app", "kill", "1"); code == 0 {
		t.Fatal("a write without a quorum succeeded")
	}
	view := func() *cluster.Master {
		out, _, code := c.gear("-master", leader, "masters", "-json")
		if code != 0 {
			return nil
		}
		var ms []cluster.Master
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			t.Fatalf("masters -json: %v\n%s", err, out)
		}
		for i := range ms {
			if ms[i].Addr == leader {
				return &ms[i]
			}
		}
		return nil
	}
	var m *cluster.Master
	waitFor(t, 30*time.Second, "the old leader to report its commit index stalled", func() bool {
		m = view()
		return m != nil && !m.CommitStalledSince.IsZero()
	})
	if m.CommitIndex >= m.LastIndex || m.Quorum {
		t.Fatalf("stalled, yet commit %d of last %d, quorum %v", m.CommitIndex, m.LastIndex, m.Quorum)
	}
	out, _, _ := c.gear("-master", leader, "masters")
	if !strings.Contains(out, "STALLED at") {
		t.Fatalf("the masters table does not show the stall:\n%s", out)
	}
	t.Logf("gear masters while stalled:\n%s", out)
	thaw()
	waitFor(t, 30*time.Second, "the stall to clear once the followers are back", func() bool {
		m = view()
		return m != nil && m.CommitStalledSince.IsZero() && m.CommitIndex == m.LastIndex && c.leader() != ""
	})
}
