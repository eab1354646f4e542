package channel

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/test/redistest"
	"github.com/redis/go-redis/v9"
)

// TestSentinelFailover serves a channel through Redis Sentinel, kills the
// master, and checks that after Sentinel promotes the replica the same
// Channel and Server carry on: pushes are accepted and delivered.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer rc.Close()
	waitFor(t, 20*time.Second, "replica in sync", func() (bool, string) {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up"), fmt.Sprint(err)
	})
	sent := redistest.StartSentinel(t, master, "mymaster")
	sc := redis.NewSentinelClient(&redis.Options{Addr: sent.Addr()})
	defer sc.Close()
	waitFor(t, 30*time.Second, "sentinel knows the replica", func() (bool, string) {
		reps, err := sc.Replicas(ctx, "mymaster").Result()
		return err == nil && len(reps) == 1, fmt.Sprint(len(reps), err)
	})

	c := newTestChannel(t, "", func(o *Options) {
		o.Addr = ""
		o.SentinelMaster = "mymaster"
		o.SentinelAddrs = []string{sent.Addr()}
	})
	rec := newRecorder()
	s := serve(t, c, "s1", rec.handler("s1"))
	waitReady(t, s)
	if err := c.Add(ctx, "room", "alice", "s1"); err != nil {
		t.Fatal(err)
	}
	before, err := c.Push(ctx, "room", []byte("before"))
	if err != nil || before.Servers != 1 {
		t.Fatalf("push via sentinel = %+v, %v", before, err)
	}
	waitFor(t, 10*time.Second, "delivery before failover", func() (bool, string) { return rec.got("s1", before.ID) == 1, rec.snapshot() })
	// Make sure the replica has every write before the master dies.
	mc := redis.NewClient(&redis.Options{Addr: master.Addr()})
	if n, err := mc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for replica = %d, %v", n, err)
	}
	mc.Close()

	if err := master.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "sentinel promoted the replica", func() (bool, string) {
		addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
		return err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(replica.Port()), fmt.Sprint(addr, err)
	})
	var after PushResult
	waitFor(t, 30*time.Second, "push accepted by the new master", func() (bool, string) {
		after, err = c.PushWithID(ctx, "room", "after-failover", []byte("after"))
		return err == nil, fmt.Sprint(err)
	})
	if after.Servers != 1 || after.Members != 1 {
		t.Fatalf("push after failover = %+v (members should have been replicated)", after)
	}
	waitFor(t, 30*time.Second, "delivery after failover", func() (bool, string) { return rec.got("s1", "after-failover") == 1, rec.snapshot() })
}
