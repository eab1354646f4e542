package test

import (
	"testing"
	"time"
)

// A follower forwards reads to the leader on kept-alive connections. When
// the leader's machine is lost, a read that goes out on one of them right
// after the loss is not left waiting on it: the leader change cuts it (it
// goes again to the new leader, or answers "no leader" and the CLI
// retries), well before TCP_USER_TIMEOUT (the failover timeout, 6 s) or
// the CLI's own 30 s would end it.
func TestForwardedReadAfterLeaderHostLost(t *testing.T) {
	nc := newNetCluster(t, "")
	li, _ := nc.stable()
	via := nc.others(li)[:1]
	// The follower's pool now holds a connection to the leader.
	for range 3 {
		if _, errOut, code := nc.on(via, "app", "list", "-json"); code != 0 {
			t.Fatalf("read through the follower %s before the cut: %s", via[0], errOut)
		}
	}
	nc.lab.cut(li)
	cut := time.Now()
	_, errOut, code := nc.on(via, "app", "list", "-json")
	took := time.Since(cut)
	if code != 0 {
		t.Fatalf("a read through the follower %s after the leader's machine was lost failed after %v: %s", via[0], took.Round(time.Millisecond), errOut)
	}
	t.Logf("leader machine lost: a read through the follower %s was answered %v after the cut", via[0], took.Round(time.Millisecond))
	if took > 3*time.Second && !raceBuild() {
		t.Fatalf("the read through the follower took %v after the leader's machine was lost, want < 3s (the leader change cuts a forwarded request waiting on the old leader)", took.Round(time.Millisecond))
	}
}

// One follower's packets to the leader are lost in the network (a one-way
// cut: raft there still hears the leader, so no leader change cuts
// anything at first), while the rest of the group is healthy. A read sent to that follower first, which goes out
// on the connection its pool kept to the leader, fails there within about
// two seconds ("no leader", naming the leader it could not reach), and the
// CLI gets its answer from the next master. Before, the pooled connection
// allowed the failover timeout, and the request waited until raft on the
// follower gave up on the leader (a quarter of it) or that timeout ended;
// with a 20 s failover timeout, that is 5-20 s.
func TestForwardedRequestFollowerCannotReachLeader(t *testing.T) {
	nc := newNetCluster(t, "gear.failover.timeout = 20s")
	li, _ := nc.stable()
	others := nc.others(li)
	fi := indexOf(nc.masters, others[0])
	for range 3 {
		if _, errOut, code := nc.on(others[:1], "app", "list", "-json"); code != 0 {
			t.Fatalf("read through the follower %s before the cut: %s", others[0], errOut)
		}
	}
	// The follower's pool now holds a connection to the leader.
	defer nc.lab.drop(fi, li)()
	cut := time.Now()
	_, errOut, code := nc.on(others, "app", "list", "-json")
	took := time.Since(cut)
	if code != 0 {
		t.Fatalf("app list through %v during the one-way cut failed after %v: %s", others, took.Round(time.Millisecond), errOut)
	}
	t.Logf("follower %s cut off from the leader %s: app list through it and then %s answered after %v", others[0], nc.masters[li], others[1], took.Round(time.Millisecond))
	if took > 2500*time.Millisecond && !raceBuild() {
		t.Errorf("app list took %v with the first master cut off from the leader, want < 2.5s", took.Round(time.Millisecond))
	}
}
