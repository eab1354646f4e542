package test

// Gossip encryption (gear.gossip.key) and the cluster label
// (gear.gossip.cluster-label) between whole clusters: three one-master
// clusters on one machine, and a worker of each other cluster that is
// also told cluster A's master. The pools never merge, and the operator
// is told why at warn level.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func TestGossipClustersStayApart(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	k2 := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	conf := func(label, key, token string) string {
		return fmt.Sprintf("gear.gossip.cluster-label = %q\ngear.gossip.key = %q\ngear.auth.token = %q\n", label, key, token)
	}
	a := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: conf("alpha", k1, "token-a")})
	b := newCluster(t, clusterOpts{masters: 1, conf: conf("beta", k1, "token-b")})   // another label, same key
	cc := newCluster(t, clusterOpts{masters: 1, conf: conf("alpha", k2, "token-c")}) // same label, another key
	// Each bridge worker belongs to its own cluster but also lists A's
	// master, so its gossip tries to join A's pool (its heartbeats stay
	// with its own cluster: A refuses its token).
	for _, c := range []*testCluster{b, cc} {
		c.start("worker0", "worker", "-ip", "127.0.0.1", "-master", c.masters[0]+","+a.masters[0],
			"-datadir", filepath.Join(c.dir, "worker0"))
	}
	workers := func(c *testCluster) []cluster.Worker {
		out, _, code := c.gear("workers", "-json")
		if code != 0 {
			return nil
		}
		var ws []cluster.Worker
		_ = json.Unmarshal([]byte(out), &ws)
		return ws
	}
	for name, c := range map[string]*testCluster{"A": a, "B": b, "C": cc} {
		waitFor(t, 40*time.Second, "cluster "+name+"'s worker alive in its own pool", func() bool {
			ws := workers(c)
			return len(ws) == 1 && ws[0].Alive && ws[0].Gossip == "alive"
		})
	}
	// Both refusals reach the operator at warn level, on the bridge
	// worker (its join of A fails) and for the wrong key on A's master.
	waitFor(t, 30*time.Second, "B's worker to warn that it cannot join A (label)", func() bool {
		l := readFile(t, b.procs["worker0"].log)
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "cannot join configured nodes") && strings.Contains(l, a.masters[0])
	})
	waitFor(t, 30*time.Second, "C's worker to warn that it cannot join A (key)", func() bool {
		l := readFile(t, cc.procs["worker0"].log)
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "cannot join configured nodes") && strings.Contains(l, a.masters[0])
	})
	waitFor(t, 30*time.Second, "A's master to log the undecryptable gossip at warn or above", func() bool {
		for _, line := range strings.Split(readFile(t, a.procs["master0"].log), "\n") {
			if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) && strings.Contains(strings.ToLower(line), "decrypt") {
				t.Logf("A's master: %s", line)
				return true
			}
		}
		return false
	})
	// A few more gossip rounds, then: nobody merged. A's master never saw
	// a member of B or C (its member events name every node it met), and
	// every cluster still has exactly its own worker.
	bw, cw, aw := workers(b)[0].ID, workers(cc)[0].ID, workers(a)[0].ID
	// The window below watches that nothing merges; it waits for nothing.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, _, code := a.gear("events", "-json")
		if code != 0 {
			t.Fatalf("events on A: exit %d", code)
		}
		if !strings.Contains(out, "worker@"+aw) {
			t.Fatalf("A's events do not name its own worker %s, so they cannot show a merge either:\n%s", aw, out)
		}
		for _, foreign := range []string{b.masters[0], cc.masters[0], bw, cw} {
			if strings.Contains(out, foreign) {
				t.Fatalf("cluster A's master met %s of another cluster: the pools merged\n%s", foreign, out)
			}
		}
		for name, c := range map[string]*testCluster{"A": a, "B": b, "C": cc} {
			if ws := workers(c); len(ws) != 1 {
				t.Fatalf("cluster %s has %d workers, want its own one: %+v", name, len(ws), ws)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}
