package channel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/test/redistest"
	"github.com/redis/go-redis/v9"
)

// TestCluster runs the channel on a one-node Redis Cluster (all 16384 slots
// on one node): it checks that every multi-key script and pipeline respects
// the cluster hash-tag rules and that the cluster client flavour works.
func TestCluster(t *testing.T) {
	r := redistest.Start(t, "--cluster-enabled", "yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("assign slots: %v", err)
	}
	waitFor(t, 20*time.Second, "cluster_state:ok", func() (bool, string) {
		info, err := admin.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok"), fmt.Sprint(err)
	})

	c := newTestChannel(t, "", func(o *Options) {
		o.Addr = ""
		o.ClusterAddrs = []string{r.Addr()}
		o.MemberTTL = 500 * time.Millisecond
	})
	if !c.isCluster {
		t.Fatalf("client is %T, want cluster client", c.Client())
	}
	rec := newRecorder()
	a := serve(t, c, "a", rec.handler("a"))
	b := serve(t, c, "b", rec.handler("b"))
	waitReady(t, a, b)
	if err := c.AddMany(ctx, []Membership{{"room", "x", "a"}, {"room", "y", "b"}, {"room", "z", "b"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Members(ctx, "room"); err != nil || !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Fatalf("members = %q, %v", got, err)
	}
	res, err := c.Push(ctx, "room", []byte("hi"))
	if err != nil || res.Servers != 2 || res.Members != 3 {
		t.Fatalf("push = %+v, %v", res, err)
	}
	waitFor(t, 10*time.Second, "deliveries", func() (bool, string) {
		return rec.got("a", res.ID) == 1 && rec.got("b", res.ID) == 1, rec.snapshot()
	})
	if err := c.Leave(ctx, "room", "b", "y", "z"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// b's sweeper removes a once its lease expires.
	waitFor(t, 10*time.Second, "a swept", func() (bool, string) {
		got, err := c.Members(ctx, "room")
		return err == nil && len(got) == 0, fmt.Sprintf("%q %v", got, err)
	})
	// The sweep script reaches member sets not named in KEYS (same slot).
	if err := c.AddMany(ctx, []Membership{{"room", "w", "gone"}, {"hall", "w", "gone"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.DropServer(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"room", "hall"} {
		if got, err := c.Members(ctx, ch); err != nil || len(got) != 0 {
			t.Fatalf("members of %s after DropServer = %q, %v", ch, got, err)
		}
	}
	if err := c.Destroy(ctx, "hall"); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Channels(ctx); err != nil || len(got) != 0 {
		t.Fatalf("channels = %q, %v", got, err)
	}
}
