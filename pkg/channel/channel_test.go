package channel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // substring of the error; "" = valid
	}{
		{"default", Options{}, ""},
		{"single", Options{Addr: "127.0.0.1:6379"}, ""},
		{"no port", Options{Addr: "localhost"}, "not host:port"},
		{"brace prefix", Options{Prefix: "app{1}:"}, "prefix"},
		{"sentinel without addrs", Options{SentinelMaster: "m"}, "without SentinelAddrs"},
		{"sentinel without master", Options{SentinelAddrs: []string{"a:1"}}, "without SentinelMaster"},
		{"cluster with db", Options{ClusterAddrs: []string{"a:1"}, DB: 2}, "only database 0"},
		{"cluster and sentinel", Options{ClusterAddrs: []string{"a:1"}, SentinelMaster: "m", SentinelAddrs: []string{"b:1"}}, "pick one"},
		{"tiny ttl", Options{MemberTTL: time.Millisecond}, "below 10ms"},
		{"bad server id", Options{ServerID: "a}b"}, "'}'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want func(Options) string // returns a complaint or ""
		err  string
	}{
		{"nothing", map[string]string{}, nil, "no Redis configured"},
		{"single", map[string]string{EnvRedis: "10.0.0.1:6380", EnvPassword: "pw", EnvDB: "3", EnvExecutorID: "chat-1"},
			func(o Options) string {
				if o.Addr != "10.0.0.1:6380" || o.Password != "pw" || o.DB != 3 || o.ServerID != "chat-1" || o.TLS != nil {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}, ""},
		{"url", map[string]string{EnvRedis: "rediss://:secret@r.example:6390/2"},
			func(o Options) string {
				if o.Addr != "r.example:6390" || o.Password != "secret" || o.DB != 2 || o.TLS == nil {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}, ""},
		{"tls", map[string]string{EnvRedis: "a:1", EnvTLS: "true"},
			func(o Options) string {
				if o.TLS == nil {
					return "no TLS"
				}
				return ""
			}, ""},
		{"bad tls", map[string]string{EnvRedis: "a:1", EnvTLS: "maybe"}, nil, EnvTLS},
		{"bad db", map[string]string{EnvRedis: "a:1", EnvDB: "x"}, nil, EnvDB},
		{"sentinel", map[string]string{EnvSentinelMaster: "mymaster", EnvSentinelAddrs: "s1:26379, s2:26379,,"},
			func(o Options) string {
				if o.SentinelMaster != "mymaster" || !slices.Equal(o.SentinelAddrs, []string{"s1:26379", "s2:26379"}) {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}, ""},
		{"cluster", map[string]string{EnvClusterAddrs: "c1:7000,c2:7001", EnvPrefix: "chat:"},
			func(o Options) string {
				if !slices.Equal(o.ClusterAddrs, []string{"c1:7000", "c2:7001"}) || o.Prefix != "chat:" {
					return fmt.Sprintf("%+v", o)
				}
				return ""
			}, ""},
		{"sentinel without master", map[string]string{EnvSentinelAddrs: "s1:26379"}, nil, EnvSentinelMaster},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := fromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("fromEnv = %v, want error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("fromEnv: %v", err)
			}
			if msg := tt.want(o); msg != "" {
				t.Fatalf("fromEnv gave wrong options: %s", msg)
			}
		})
	}
}

func TestNewPicksFlavour(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		cluster bool
		addr    string
	}{
		{"single", Options{Addr: "127.0.0.1:1"}, false, "127.0.0.1:1"},
		{"sentinel", Options{SentinelMaster: "m", SentinelAddrs: []string{"127.0.0.1:1"}}, false, `master "m" via sentinels 127.0.0.1:1`},
		{"cluster", Options{ClusterAddrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, true, "cluster 127.0.0.1:1,127.0.0.1:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			c, err := New(ctx, tt.o)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			if _, ok := c.Client().(*redis.ClusterClient); ok != tt.cluster || c.addr != tt.addr {
				t.Fatalf("client %T addr %q, want cluster=%v addr %q", c.Client(), c.addr, tt.cluster, tt.addr)
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	r := startRedis(t)
	c := newTestChannel(t, r.Addr(), nil)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"add empty channel", func() error { return c.Add(ctx, "", "m", "s") }},
		{"add empty member", func() error { return c.Add(ctx, "ch", "", "s") }},
		{"add no server", func() error { return c.Add(ctx, "ch", "m", "") }},
		{"add brace server", func() error { return c.Add(ctx, "ch", "m", "a}") }},
		{"leave empty channel", func() error { return c.Leave(ctx, "", "s", "m") }},
		{"members empty channel", func() error { _, err := c.Members(ctx, ""); return err }},
		{"push empty channel", func() error { _, err := c.Push(ctx, "", nil); return err }},
		{"push empty id", func() error { _, err := c.PushWithID(ctx, "ch", "", nil); return err }},
		{"destroy empty", func() error { return c.Destroy(ctx, "") }},
		{"serve no server", func() error { return c.Serve(ctx, "", func(Delivery) {}).Close() }},
		{"serve nil handler", func() error { return c.Serve(ctx, "s", nil).Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestMembership(t *testing.T) {
	r := startRedis(t)
	c := newTestChannel(t, r.Addr(), func(o *Options) { o.ServerID = "s1" })
	ctx := context.Background()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Add(ctx, "room", "alice", ""))   // default server s1
	must(c.Add(ctx, "room", "alice", "s1")) // duplicate: no-op
	must(c.AddMany(ctx, []Membership{
		{"room", "bob", "s2"}, {"room", "carol", "s2"}, {"lobby", "dave", "s3"}, {"room", "erin", "s3"},
	}))
	must(c.AddMany(ctx, nil))

	checks := []struct {
		name string
		get  func() ([]string, error)
		want []string
	}{
		{"members room", func() ([]string, error) { return c.Members(ctx, "room") }, []string{"alice", "bob", "carol", "erin"}},
		{"members lobby", func() ([]string, error) { return c.Members(ctx, "lobby") }, []string{"dave"}},
		{"members on s2", func() ([]string, error) { return c.MembersOn(ctx, "room", "s2") }, []string{"bob", "carol"}},
		{"members on default", func() ([]string, error) { return c.MembersOn(ctx, "room", "") }, []string{"alice"}},
		{"members unknown", func() ([]string, error) { return c.Members(ctx, "nope") }, nil},
		{"channels", func() ([]string, error) { return c.Channels(ctx) }, []string{"lobby", "room"}},
	}
	for _, ck := range checks {
		got, err := ck.get()
		must(err)
		if !slices.Equal(got, ck.want) {
			t.Errorf("%s = %q, want %q", ck.name, got, ck.want)
		}
	}

	must(c.Leave(ctx, "room", "s2", "bob", "carol", "nobody"))
	must(c.Leave(ctx, "room", "s3", "erin"))
	if got, _ := c.Members(ctx, "room"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("after leave: members = %q, want [alice]", got)
	}
	srvs, err := c.client.SMembers(ctx, c.chServersKey("room")).Result()
	must(err)
	if !slices.Equal(srvs, []string{"s1"}) {
		t.Errorf("servers of room after leave = %q, want [s1] (emptied servers are unlinked)", srvs)
	}

	// Bulk: more members than one Lua unpack takes.
	var bulk []Membership
	var bulkIDs []string
	for i := range 10000 {
		id := fmt.Sprintf("b%05d", i)
		bulk = append(bulk, Membership{"bulk", id, "s9"})
		bulkIDs = append(bulkIDs, id)
	}
	must(c.AddMany(ctx, bulk))
	if got, _ := c.MembersOn(ctx, "bulk", "s9"); len(got) != len(bulk) {
		t.Errorf("bulk members = %d, want %d", len(got), len(bulk))
	}
	must(c.Leave(ctx, "bulk", "s9", bulkIDs...))
	if got, _ := c.Members(ctx, "bulk"); len(got) != 0 {
		t.Errorf("bulk members after leave = %d", len(got))
	}
	must(c.Destroy(ctx, "bulk"))

	must(c.Destroy(ctx, "room"))
	if got, _ := c.Channels(ctx); !slices.Equal(got, []string{"lobby"}) {
		t.Errorf("channels after destroy = %q", got)
	}
	if got, _ := c.Members(ctx, "room"); len(got) != 0 {
		t.Errorf("members after destroy = %q", got)
	}
	if n, _ := c.client.Exists(ctx, c.memberSetKey("s1", "room"), c.chServersKey("room")).Result(); n != 0 {
		t.Errorf("%d keys of destroyed channel left", n)
	}
	if ok, _ := c.client.SIsMember(ctx, c.indexKey("s1"), "room").Result(); ok {
		t.Errorf("server index still lists destroyed channel")
	}
}

// TestPushExactlyOnce runs many servers and pushers concurrently and checks
// that every push reaches every server with members exactly once, listing
// exactly that server's members.
func TestPushExactlyOnce(t *testing.T) {
	r := startRedis(t)
	const (
		servers = 8
		members = 400
		pushes  = 200
	)
	var nextID atomic.Int64
	tune := func(o *Options) { o.NewID = func() string { return fmt.Sprintf("p%05d", nextID.Add(1)) } }
	adder := newTestChannel(t, r.Addr(), tune)
	pusher := newTestChannel(t, r.Addr(), tune)
	rec := newRecorder()
	var srvs []*Server
	for i := range servers {
		id := fmt.Sprintf("srv-%d", i)
		srvs = append(srvs, serve(t, newTestChannel(t, r.Addr(), nil), id, rec.handler(id)))
	}
	waitReady(t, srvs...)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := map[string][]string{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range members {
		m, s := fmt.Sprintf("u%03d", i), fmt.Sprintf("srv-%d", i%servers)
		want[s] = append(want[s], m)
		g.Go(func() error { return adder.Add(gctx, "world", m, s) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, err := adder.Members(ctx, "world"); err != nil || len(got) != members {
		t.Fatalf("members = %d (%v), want %d", len(got), err, members)
	}

	ids := make([]string, pushes)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range pushes {
		g.Go(func() error {
			res, err := pusher.Push(gctx, "world", []byte(fmt.Sprintf("msg %d", i)))
			if err != nil {
				return err
			}
			if res.Servers != servers || res.Members != members {
				return fmt.Errorf("push %d reached %d servers / %d members, want %d / %d", i, res.Servers, res.Members, servers, members)
			}
			ids[i] = res.ID
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// Inboxes are FIFO: once a final marker push reached every server,
	// every earlier push has been handled too.
	marker, err := pusher.Push(ctx, "world", []byte("marker"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "marker on every server", func() (bool, string) {
		for i := range servers {
			if rec.got(fmt.Sprintf("srv-%d", i), marker.ID) == 0 {
				return false, rec.snapshot()
			}
		}
		return true, ""
	})

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.total != servers*(pushes+1) {
		t.Errorf("total deliveries %d, want %d", rec.total, servers*(pushes+1))
	}
	for s, ms := range want {
		slices.Sort(ms)
		for i, id := range ids {
			if n := rec.count[s][id]; n != 1 {
				t.Errorf("server %s got push %s %d times, want exactly once", s, id, n)
				continue
			}
			if !slices.Equal(rec.members[s][id], ms) {
				t.Errorf("server %s push %s listed %d members, want %d", s, id, len(rec.members[s][id]), len(ms))
			}
			if d := rec.data[s][id]; d != fmt.Sprintf("msg %d", i) {
				t.Errorf("server %s push %s data %q", s, id, d)
			}
		}
	}
	if rec.redeliv != 0 {
		t.Errorf("%d deliveries flagged redelivered, want 0", rec.redeliv)
	}
}

func TestPushEdgeCases(t *testing.T) {
	r := startRedis(t)
	c := newTestChannel(t, r.Addr(), nil)
	ctx := context.Background()
	rec := newRecorder()
	a := serve(t, c, "a", rec.handler("a"))
	b := serve(t, c, "b", rec.handler("b"))
	waitReady(t, a, b)

	t.Run("empty channel", func(t *testing.T) {
		res, err := c.Push(ctx, "nobody-here", []byte("x"))
		if err != nil || res.Servers != 0 || res.Members != 0 || res.ID == "" {
			t.Fatalf("push to empty channel = %+v, %v", res, err)
		}
	})
	t.Run("leave stops delivery", func(t *testing.T) {
		if err := c.AddMany(ctx, []Membership{{"room", "x", "a"}, {"room", "y", "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Leave(ctx, "room", "b", "y"); err != nil {
			t.Fatal(err)
		}
		res, err := c.Push(ctx, "room", []byte("after leave"))
		if err != nil || res.Servers != 1 || res.Members != 1 {
			t.Fatalf("push = %+v, %v; want 1 server, 1 member", res, err)
		}
		waitFor(t, 10*time.Second, "delivery on a", func() (bool, string) { return rec.got("a", res.ID) == 1, rec.snapshot() })
		// b's inbox is FIFO: push a marker to b and check it saw nothing before.
		if err := c.Add(ctx, "other", "z", "b"); err != nil {
			t.Fatal(err)
		}
		mk, err := c.Push(ctx, "other", nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "marker on b", func() (bool, string) { return rec.got("b", mk.ID) == 1, rec.snapshot() })
		if n := rec.got("b", res.ID); n != 0 {
			t.Fatalf("b got push after its last member left (%d times)", n)
		}
	})
	t.Run("destroy stops delivery", func(t *testing.T) {
		if err := c.Destroy(ctx, "room"); err != nil {
			t.Fatal(err)
		}
		res, err := c.Push(ctx, "room", nil)
		if err != nil || res.Servers != 0 {
			t.Fatalf("push after destroy = %+v, %v", res, err)
		}
	})
	t.Run("retry with same id is dropped", func(t *testing.T) {
		if err := c.Add(ctx, "dup", "m", "a"); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := c.PushWithID(ctx, "dup", "fixed-id", []byte("once")); err != nil {
				t.Fatal(err)
			}
		}
		mk, err := c.Push(ctx, "dup", nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "marker on a", func() (bool, string) { return rec.got("a", mk.ID) == 1, rec.snapshot() })
		if n := rec.got("a", "fixed-id"); n != 1 {
			t.Fatalf("push id retried 3 times was handled %d times, want 1", n)
		}
	})
}

// TestQueuedAndRedelivered: pushes to a server that is not serving wait in
// its inbox; entries a crashed server read but did not acknowledge come back
// flagged Redelivered.
func TestQueuedAndRedelivered(t *testing.T) {
	r := startRedis(t)
	c := newTestChannel(t, r.Addr(), nil)
	ctx := context.Background()
	if err := c.Add(ctx, "room", "m1", "late"); err != nil {
		t.Fatal(err)
	}
	first, err := c.Push(ctx, "room", []byte("queued"))
	if err != nil || first.Servers != 1 {
		t.Fatalf("push before serve = %+v, %v", first, err)
	}
	// A "crashed" earlier Serve: read the entry as consumer "late", no ack.
	inbox := c.inboxKey("late")
	if err := c.client.XGroupCreateMkStream(ctx, inbox, consumerGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: consumerGroup, Consumer: "late", Streams: []string{inbox, ">"}, Count: 10, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	second, err := c.Push(ctx, "room", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	var redelivered atomic.Value
	h := rec.handler("late")
	s := serve(t, c, "late", func(d Delivery) {
		if d.PushID == first.ID {
			redelivered.Store(d.Redelivered)
		}
		h(d)
	})
	waitFor(t, 10*time.Second, "both pushes", func() (bool, string) {
		return rec.got("late", first.ID) == 1 && rec.got("late", second.ID) == 1, rec.snapshot()
	})
	if v, _ := redelivered.Load().(bool); !v {
		t.Errorf("unacknowledged entry not flagged Redelivered")
	}
	waitFor(t, 10*time.Second, "inbox drained", func() (bool, string) {
		n, err := c.client.XLen(ctx, inbox).Result()
		return err == nil && n == 0, fmt.Sprintf("xlen %d err %v", n, err)
	})
	_ = s.Close()
}

func TestDeadServerCleanup(t *testing.T) {
	r := startRedis(t)
	const ttl = 300 * time.Millisecond
	c := newTestChannel(t, r.Addr(), func(o *Options) { o.MemberTTL = ttl })
	ctx := context.Background()

	t.Run("sweeper removes a stopped server", func(t *testing.T) {
		rec := newRecorder()
		a := serve(t, c, "alive", rec.handler("alive"))
		b := serve(t, c, "doomed", rec.handler("doomed"))
		waitReady(t, a, b)
		if err := c.AddMany(ctx, []Membership{{"room", "x", "alive"}, {"room", "y", "doomed"}, {"hall", "z", "doomed"}}); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		// Only the sweeper (run by "alive") removes "doomed" from the
		// server registry; lazy reads do not.
		waitFor(t, 10*time.Second, "doomed swept", func() (bool, string) {
			ok, err := c.client.SIsMember(ctx, c.serversKey(), "doomed").Result()
			return err == nil && !ok, fmt.Sprintf("registered=%v err=%v", ok, err)
		})
		for _, k := range []string{c.memberSetKey("doomed", "room"), c.memberSetKey("doomed", "hall"), c.indexKey("doomed"), c.inboxKey("doomed")} {
			if n, _ := c.client.Exists(ctx, k).Result(); n != 0 {
				t.Errorf("key %s of dead server left", k)
			}
		}
		for _, ch := range []string{"room", "hall"} {
			if ok, _ := c.client.SIsMember(ctx, c.chServersKey(ch), "doomed").Result(); ok {
				t.Errorf("dead server still linked to %s", ch)
			}
		}
		if got, _ := c.Members(ctx, "room"); !slices.Equal(got, []string{"x"}) {
			t.Errorf("members = %q, want [x]", got)
		}
		res, err := c.Push(ctx, "room", nil)
		if err != nil || res.Servers != 1 {
			t.Errorf("push after sweep = %+v, %v", res, err)
		}
	})
	t.Run("lazy cleanup on read without any sweeper", func(t *testing.T) {
		// "ghost" never serves: Add gave it one lease of ttl.
		if err := c.Add(ctx, "lazy", "g", "ghost"); err != nil {
			t.Fatal(err)
		}
		if got, _ := c.Members(ctx, "lazy"); !slices.Equal(got, []string{"g"}) {
			t.Fatalf("members right after add = %q", got)
		}
		waitFor(t, 10*time.Second, "ghost members dropped", func() (bool, string) {
			got, err := c.Members(ctx, "lazy")
			return err == nil && len(got) == 0, fmt.Sprintf("members %q err %v", got, err)
		})
		if ok, _ := c.client.SIsMember(ctx, c.chServersKey("lazy"), "ghost").Result(); ok {
			t.Errorf("ghost still linked to channel")
		}
	})
	t.Run("push skips a dead server", func(t *testing.T) {
		if err := c.Add(ctx, "lazy2", "g", "ghost2"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "ghost2 lease expired", func() (bool, string) {
			n, err := c.client.Exists(ctx, c.aliveKey("ghost2")).Result()
			return err == nil && n == 0, fmt.Sprint(n, err)
		})
		res, err := c.Push(ctx, "lazy2", nil)
		if err != nil || res.Servers != 0 {
			t.Fatalf("push to dead server = %+v, %v", res, err)
		}
		if n, _ := c.client.Exists(ctx, c.inboxKey("ghost2")).Result(); n != 0 {
			t.Errorf("push wrote to a dead server's inbox")
		}
	})
	t.Run("drop server", func(t *testing.T) {
		if err := c.Add(ctx, "d", "m", "gone"); err != nil {
			t.Fatal(err)
		}
		if err := c.DropServer(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if got, _ := c.Members(ctx, "d"); len(got) != 0 {
			t.Fatalf("members after DropServer = %q", got)
		}
	})
}

// TestRedisRestart stops Redis under a serving server: operations fail with
// a clear error, nothing panics, and after the restart the lease-lost
// callback re-adds members and pushes are delivered again.
func TestRedisRestart(t *testing.T) {
	r := startRedis(t)
	c := newTestChannel(t, r.Addr(), func(o *Options) { o.MemberTTL = time.Second })
	ctx := context.Background()
	rec := newRecorder()
	var lost atomic.Int32
	s := serve(t, c, "s1", rec.handler("s1"), OnLeaseLost(func(ctx context.Context) {
		if err := c.Add(ctx, "room", "alice", "s1"); err == nil {
			lost.Add(1)
		}
	}))
	waitReady(t, s)
	if err := c.Add(ctx, "room", "alice", "s1"); err != nil {
		t.Fatal(err)
	}
	before, err := c.Push(ctx, "room", []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "delivery before outage", func() (bool, string) { return rec.got("s1", before.ID) == 1, rec.snapshot() })

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	opCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = c.Push(opCtx, "room", []byte("during"))
	wantMsg := "channel: redis " + r.Addr() + " unreachable: "
	if err == nil || !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), wantMsg) {
		t.Fatalf("push during outage = %v, want ErrUnreachable starting %q", err, wantMsg)
	}
	if err := c.Add(opCtx, "room", "bob", "s1"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("add during outage = %v, want ErrUnreachable", err)
	}
	if _, err := c.Members(opCtx, "room"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("members during outage = %v, want ErrUnreachable", err)
	}

	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "lease-lost callback re-added members", func() (bool, string) {
		return lost.Load() > 0, "no callback yet"
	})
	// go-redis keeps returning the last dial error for up to a second
	// after Redis is back (its dial circuit breaker): retry the push with
	// the same id, as callers are told to.
	var after PushResult
	waitFor(t, 20*time.Second, "push accepted after restart", func() (bool, string) {
		after, err = c.PushWithID(ctx, "room", "after-restart", []byte("after"))
		return err == nil, fmt.Sprint(err)
	})
	if after.Servers != 1 {
		t.Fatalf("push after restart = %+v", after)
	}
	waitFor(t, 20*time.Second, "delivery after restart", func() (bool, string) { return rec.got("s1", after.ID) == 1, rec.snapshot() })
	select {
	case <-s.Done():
		t.Fatalf("server stopped during the outage: %v", s.Err())
	default:
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.total != 2 {
		t.Errorf("handled %d deliveries, want 2 (before, after)", rec.total)
	}
}

// TestCloseDuringHandler: a delivery whose handler was running when the
// server was stopped is acknowledged, so the next Serve of the same id does not get
// it again.
func TestCloseDuringHandler(t *testing.T) {
	r := startRedis(t)
	c := newTestChannel(t, r.Addr(), nil)
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	rec := newRecorder()
	h := rec.handler("s")
	serveCtx, stop := context.WithCancel(ctx)
	first := c.Serve(serveCtx, "s", func(d Delivery) {
		h(d)
		close(entered)
		<-release
	})
	waitReady(t, first)
	if err := c.Add(ctx, "room", "m", "s"); err != nil {
		t.Fatal(err)
	}
	p, err := c.Push(ctx, "room", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	stop() // the server's context ends while the handler runs
	close(release)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := serve(t, c, "s", h)
	waitReady(t, second)
	mk, err := c.Push(ctx, "room", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "marker", func() (bool, string) { return rec.got("s", mk.ID) == 1, rec.snapshot() })
	if n := rec.got("s", p.ID); n != 1 {
		t.Fatalf("push handled %d times across two Serves, want 1", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.redeliv != 0 {
		t.Fatalf("%d redeliveries, want 0", rec.redeliv)
	}
}
