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
