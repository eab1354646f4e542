package channel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Channel is a handle on the global channels of one key prefix in one Redis
// deployment. It is safe for concurrent use. Close it when done.
type Channel struct {
	client    redis.UniversalClient
	addr      string // for error messages
	opts      Options
	log       *slog.Logger
	isCluster bool
}

// Membership is one member of one channel, attached to one server.
type Membership struct {
	Channel string
	Member  string
	Server  string
}

// PushResult tells what a push reached.
type PushResult struct {
	ID      string // push id, also in every Delivery
	Servers int    // servers whose inbox got one entry
	Members int    // members listed in those entries
}

// New validates opts, connects (single server, Sentinel failover or Cluster,
// see Options) and checks that Redis answers. An unreachable Redis is not an
// error here: it is logged, and operations fail with ErrUnreachable until the
// client reconnects by itself. New fails only for invalid options.
func New(ctx context.Context, opts Options) (*Channel, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	client, addr := newClient(opts)
	_, isCluster := client.(*redis.ClusterClient)
	c := &Channel{client: client, addr: addr, opts: opts, log: opts.Logger, isCluster: isCluster}
	if err := client.Ping(ctx).Err(); err != nil {
		c.log.Warn("channel: redis not reachable yet; operations fail until it is", "redis", addr, "err", c.wrap("ping", err))
	}
	return c, nil
}

// Close releases the Redis connections. Servers started by Serve must be
// closed first.
func (c *Channel) Close() error {
	if err := c.client.Close(); err != nil {
		return fmt.Errorf("channel: close redis client: %w", err)
	}
	return nil
}

// Client is the underlying go-redis client, for diagnostics and tests.
func (c *Channel) Client() redis.UniversalClient { return c.client }

// ServerID is the default server id (Options.ServerID, GEAR_EXECUTOR_ID).
func (c *Channel) ServerID() string { return c.opts.ServerID }

// Key layout (docs/CHANNEL.md is the normative description). Keys of one
// server share the hash tag {srv:ID}, keys of one channel {ch:NAME}.
func (c *Channel) channelsKey() string              { return c.opts.Prefix + "channels" }
func (c *Channel) serversKey() string               { return c.opts.Prefix + "servers" }
func (c *Channel) sweepLockKey() string             { return c.opts.Prefix + "sweep" }
func (c *Channel) chServersKey(ch string) string    { return c.opts.Prefix + "{ch:" + ch + "}:servers" }
func (c *Channel) srvTag(s string) string           { return c.opts.Prefix + "{srv:" + s + "}" }
func (c *Channel) aliveKey(s string) string         { return c.srvTag(s) + ":alive" }
func (c *Channel) indexKey(s string) string         { return c.srvTag(s) + ":channels" }
func (c *Channel) inboxKey(s string) string         { return c.srvTag(s) + ":inbox" }
func (c *Channel) memberSetPrefix(s string) string  { return c.srvTag(s) + ":ch:" }
func (c *Channel) memberSetKey(s, ch string) string { return c.memberSetPrefix(s) + ch }

const consumerGroup = "gear"

func checkChannel(ch string) error {
	if ch == "" {
		return invalid("empty channel name")
	}
	return nil
}

func checkServer(s string) error {
	if s == "" {
		return invalid("empty server id (pass one, or set Options.ServerID / GEAR_EXECUTOR_ID)")
	}
	if strings.Contains(s, "}") {
		return invalid("server id %q contains '}' (reserved for Redis Cluster hash tags)", s)
	}
	return nil
}

func (c *Channel) server(s string) (string, error) {
	if s == "" {
		s = c.opts.ServerID
	}
	return s, checkServer(s)
}

// Add puts member into channel ch on server (empty server: Options.ServerID).
// Adding an existing member is a no-op. The channel is created if needed.
func (c *Channel) Add(ctx context.Context, ch, member, server string) error {
	return c.AddMany(ctx, []Membership{{Channel: ch, Member: member, Server: server}})
}

// AddMany adds many memberships with pipelined bulk writes (one SADD per
// channel and server). It is all or nothing only in the absence of errors:
// on an error some memberships may have been added; adding again is safe.
func (c *Channel) AddMany(ctx context.Context, ms []Membership) error {
	if len(ms) == 0 {
		return nil
	}
	type group struct {
		ch, srv string
		members []any
	}
	type key struct{ ch, srv string }
	index := map[key]int{}
	var groups []group
	chServers := map[string][]any{}
	var chOrder []string
	servers := map[string]bool{}
	for i, m := range ms {
		if err := checkChannel(m.Channel); err != nil {
			return fmt.Errorf("%w (membership %d)", err, i)
		}
		if m.Member == "" {
			return fmt.Errorf("%w (membership %d, channel %q)", invalid("empty member id"), i, m.Channel)
		}
		srv := m.Server
		if srv == "" {
			srv = c.opts.ServerID
		}
		k := key{m.Channel, srv}
		gi, ok := index[k]
		if !ok {
			if err := checkServer(srv); err != nil {
				return fmt.Errorf("%w (membership %d, channel %q)", err, i, m.Channel)
			}
			gi = len(groups)
			index[k] = gi
			groups = append(groups, group{ch: m.Channel, srv: srv})
			if _, ok := chServers[m.Channel]; !ok {
				chOrder = append(chOrder, m.Channel)
			}
			chServers[m.Channel] = append(chServers[m.Channel], srv)
			servers[srv] = true
		}
		groups[gi].members = append(groups[gi].members, m.Member)
	}
	op := fmt.Sprintf("add %d members to %q", len(ms), ms[0].Channel)
	if len(chOrder) > 1 {
		op = fmt.Sprintf("add %d members to %d channels", len(ms), len(chOrder))
	}
	// Phase 1 writes the member sets (and a lease for servers that have
	// none yet); phase 2 links servers to channels. The member set must
	// exist before the link, so that a concurrent Leave that unlinks an
	// emptied server sees the new member and links it back (see unlink).
	ttl := c.opts.MemberTTL
	pipe := c.client.Pipeline()
	for s := range servers {
		pipe.SetNX(ctx, c.aliveKey(s), "added", ttl)
		pipe.SAdd(ctx, c.serversKey(), s)
	}
	for _, g := range groups {
		pipe.SAdd(ctx, c.memberSetKey(g.srv, g.ch), g.members...)
		pipe.SAdd(ctx, c.indexKey(g.srv), g.ch)
	}
	if c.isCluster {
		// Cluster pipelines run on many nodes in parallel: no order
		// between slots, so the second phase goes in its own round trip.
		if _, err := pipe.Exec(ctx); err != nil {
			return c.wrap(op, err)
		}
		pipe = c.client.Pipeline()
	}
	chans := make([]any, 0, len(chOrder))
	for _, ch := range chOrder {
		pipe.SAdd(ctx, c.chServersKey(ch), chServers[ch]...)
		chans = append(chans, ch)
	}
	pipe.SAdd(ctx, c.channelsKey(), chans...)
	if _, err := pipe.Exec(ctx); err != nil {
		return c.wrap(op, err)
	}
	return nil
}

// Leave removes members from channel ch on server (empty server:
// Options.ServerID). Unknown members are ignored.
func (c *Channel) Leave(ctx context.Context, ch, server string, members ...string) error {
	if err := checkChannel(ch); err != nil {
		return err
	}
	srv, err := c.server(server)
	if err != nil {
		return err
	}
	if len(members) == 0 {
		return nil
	}
	// Lua's unpack takes at most a few thousand values: chunk.
	const chunk = 1000
	keys := []string{c.memberSetKey(srv, ch), c.indexKey(srv)}
	var calls []scriptCall
	for len(members) > 0 {
		n := min(chunk, len(members))
		args := make([]any, 0, n+1)
		args = append(args, ch)
		for _, m := range members[:n] {
			args = append(args, m)
		}
		calls = append(calls, scriptCall{leaveScript, keys, args})
		members = members[n:]
	}
	op := fmt.Sprintf("leave %q on server %q", ch, srv)
	var left int64
	for _, cmd := range runScripts(ctx, c.client, calls) {
		var err error
		if left, err = cmd.Int64(); err != nil {
			return c.wrap(op, err)
		}
	}
	if left == 0 {
		return c.unlink(ctx, op, ch, srv)
	}
	return nil
}

// unlink removes server from the channel's server set, then links it back if
// it has members again (an Add raced with us: Add writes the member set
// before the link, so either we see its member or its link comes after ours).
func (c *Channel) unlink(ctx context.Context, op, ch, srv string) error {
	if err := c.client.SRem(ctx, c.chServersKey(ch), srv).Err(); err != nil {
		return c.wrap(op, err)
	}
	n, err := c.client.Exists(ctx, c.memberSetKey(srv, ch)).Result()
	if err != nil {
		return c.wrap(op, err)
	}
	if n > 0 {
		if err := c.client.SAdd(ctx, c.chServersKey(ch), srv).Err(); err != nil {
			return c.wrap(op, err)
		}
	}
	return nil
}

// MembersByServer returns the members of ch grouped by server. Members of
// servers whose lease expired are dropped on the way.
func (c *Channel) MembersByServer(ctx context.Context, ch string) (map[string][]string, error) {
	if err := checkChannel(ch); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("members of %q", ch)
	srvs, err := c.client.SMembers(ctx, c.chServersKey(ch)).Result()
	if err != nil {
		return nil, c.wrap(op, err)
	}
	calls := make([]scriptCall, len(srvs))
	for i, s := range srvs {
		calls[i] = c.readCall(ch, s)
	}
	out := map[string][]string{}
	var dead []string
	for i, cmd := range runScripts(ctx, c.client, calls) {
		m, err := cmd.StringSlice()
		switch {
		case errors.Is(err, redis.Nil):
			dead = append(dead, srvs[i])
		case err != nil:
			return nil, c.wrap(op, err)
		case len(m) > 0:
			slices.Sort(m)
			out[srvs[i]] = m
		}
	}
	c.unlinkDead(ctx, op, ch, dead)
	return out, nil
}

func (c *Channel) readCall(ch, s string) scriptCall {
	return scriptCall{readScript, []string{c.aliveKey(s), c.memberSetKey(s, ch), c.indexKey(s)}, []any{ch}}
}

func (c *Channel) unlinkDead(ctx context.Context, op, ch string, dead []string) {
	for _, s := range dead {
		c.log.Info("channel: dropped members of dead server", "channel", ch, "server", s)
		if err := c.unlink(ctx, op, ch, s); err != nil {
			c.log.Warn("channel: unlink dead server", "channel", ch, "server", s, "err", err)
		}
	}
}

// Members returns all members of ch, on every live server, sorted.
func (c *Channel) Members(ctx context.Context, ch string) ([]string, error) {
	by, err := c.MembersByServer(ctx, ch)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range by {
		out = append(out, m...)
	}
	slices.Sort(out)
	return out, nil
}

// MembersOn returns the members of ch on one server (empty server:
// Options.ServerID), sorted; none if the server's lease expired.
func (c *Channel) MembersOn(ctx context.Context, ch, server string) ([]string, error) {
	if err := checkChannel(ch); err != nil {
		return nil, err
	}
	srv, err := c.server(server)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("members of %q on server %q", ch, srv)
	m, err := runScripts(ctx, c.client, []scriptCall{c.readCall(ch, srv)})[0].StringSlice()
	if errors.Is(err, redis.Nil) {
		c.unlinkDead(ctx, op, ch, []string{srv})
		return nil, nil
	}
	if err != nil {
		return nil, c.wrap(op, err)
	}
	slices.Sort(m)
	return m, nil
}

// Push sends data to every member of ch: each server with members in ch gets
// exactly one Delivery listing its members. It fails when any server's inbox
// could not be written; the PushResult then tells what was reached, and
// PushWithID with the same id retries without duplicates for servers that
// already got it (their Serve drops a push id it has already handled).
// Pushing to a channel with no members returns a zero PushResult and no error.
func (c *Channel) Push(ctx context.Context, ch string, data []byte) (PushResult, error) {
	return c.PushWithID(ctx, ch, c.opts.NewID(), data)
}

// PushWithID is Push with a caller-chosen push id, for idempotent retries.
func (c *Channel) PushWithID(ctx context.Context, ch, id string, data []byte) (PushResult, error) {
	res := PushResult{ID: id}
	if err := checkChannel(ch); err != nil {
		return res, err
	}
	if id == "" {
		return res, invalid("empty push id")
	}
	op := fmt.Sprintf("push %s to %q", id, ch)
	srvs, err := c.client.SMembers(ctx, c.chServersKey(ch)).Result()
	if err != nil {
		return res, c.wrap(op, fmt.Errorf("no server reached: %w", err))
	}
	calls := make([]scriptCall, len(srvs))
	for i, s := range srvs {
		calls[i] = scriptCall{pushScript,
			[]string{c.aliveKey(s), c.memberSetKey(s, ch), c.indexKey(s), c.inboxKey(s)},
			[]any{ch, id, data, c.opts.InboxMaxLen}}
	}
	var dead, failed []string
	var firstErr error
	for i, cmd := range runScripts(ctx, c.client, calls) {
		n, err := cmd.Int64()
		switch {
		case err != nil:
			failed = append(failed, srvs[i])
			if firstErr == nil {
				firstErr = err
			}
		case n < 0:
			dead = append(dead, srvs[i])
		case n > 0:
			res.Servers++
			res.Members += int(n)
		}
	}
	if firstErr != nil {
		return res, c.wrap(op, fmt.Errorf("not delivered to %d of %d servers (%s); retry with PushWithID and the same id: %w",
			len(failed), len(srvs), strings.Join(failed, ","), firstErr))
	}
	c.unlinkDead(ctx, op, ch, dead)
	return res, nil
}

// Destroy removes channel ch and all its memberships. Pushes already queued
// are still delivered.
func (c *Channel) Destroy(ctx context.Context, ch string) error {
	if err := checkChannel(ch); err != nil {
		return err
	}
	op := fmt.Sprintf("destroy %q", ch)
	srvs, err := c.client.SMembers(ctx, c.chServersKey(ch)).Result()
	if err != nil {
		return c.wrap(op, err)
	}
	pipe := c.client.Pipeline()
	for _, s := range srvs {
		pipe.Del(ctx, c.memberSetKey(s, ch))
		pipe.SRem(ctx, c.indexKey(s), ch)
	}
	pipe.Del(ctx, c.chServersKey(ch))
	pipe.SRem(ctx, c.channelsKey(), ch)
	if _, err := pipe.Exec(ctx); err != nil {
		return c.wrap(op, err)
	}
	return nil
}

// Channels lists the channels that exist (added to and not destroyed),
// sorted.
func (c *Channel) Channels(ctx context.Context) ([]string, error) {
	chans, err := c.client.SMembers(ctx, c.channelsKey()).Result()
	if err != nil {
		return nil, c.wrap("list channels", err)
	}
	slices.Sort(chans)
	return chans, nil
}

// Sweep removes the members and inboxes of every server whose lease has
// expired and returns those servers. Serve runs it periodically; it is
// exported for operators and tests.
func (c *Channel) Sweep(ctx context.Context) ([]string, error) {
	srvs, err := c.client.SMembers(ctx, c.serversKey()).Result()
	if err != nil {
		return nil, c.wrap("sweep dead servers", err)
	}
	return c.sweep(ctx, srvs)
}

// DropServer ends server's lease now and removes its members and inbox, as
// the sweeper would after MemberTTL. Use it when a server is gone for good.
func (c *Channel) DropServer(ctx context.Context, server string) error {
	if err := checkServer(server); err != nil {
		return err
	}
	if err := c.client.Del(ctx, c.aliveKey(server)).Err(); err != nil {
		return c.wrap(fmt.Sprintf("drop server %q", server), err)
	}
	_, err := c.sweep(ctx, []string{server})
	return err
}

func (c *Channel) sweep(ctx context.Context, srvs []string) ([]string, error) {
	calls := make([]scriptCall, len(srvs))
	for i, s := range srvs {
		calls[i] = scriptCall{sweepScript,
			[]string{c.aliveKey(s), c.indexKey(s), c.inboxKey(s)},
			[]any{c.memberSetPrefix(s)}}
	}
	var dead []string
	for i, cmd := range runScripts(ctx, c.client, calls) {
		s := srvs[i]
		chans, err := cmd.StringSlice()
		if errors.Is(err, redis.Nil) {
			continue // alive
		}
		op := fmt.Sprintf("sweep dead server %q", s)
		if err != nil {
			return dead, c.wrap(op, err)
		}
		for _, ch := range chans {
			if err := c.unlink(ctx, op, ch, s); err != nil {
				return dead, err
			}
		}
		// Forget the server unless it came back meanwhile.
		if err := c.client.SRem(ctx, c.serversKey(), s).Err(); err != nil {
			return dead, c.wrap(op, err)
		}
		if n, err := c.client.Exists(ctx, c.aliveKey(s)).Result(); err != nil {
			return dead, c.wrap(op, err)
		} else if n > 0 {
			if err := c.client.SAdd(ctx, c.serversKey(), s).Err(); err != nil {
				return dead, c.wrap(op, err)
			}
		}
		c.log.Info("channel: swept dead server", "server", s, "channels", len(chans))
		dead = append(dead, s)
	}
	return dead, nil
}

// lease renews server's lease and reports whether it existed before.
func (c *Channel) lease(ctx context.Context, server, token string) (existed bool, err error) {
	pipe := c.client.Pipeline()
	set := pipe.Do(ctx, "SET", c.aliveKey(server), token, "PX", c.opts.MemberTTL.Milliseconds(), "GET")
	reg := pipe.SAdd(ctx, c.serversKey(), server)
	_, _ = pipe.Exec(ctx) // errors are read per command
	if err := set.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return false, c.wrap(fmt.Sprintf("heartbeat of server %q", server), err)
	}
	if err := reg.Err(); err != nil {
		return false, c.wrap(fmt.Sprintf("register server %q", server), err)
	}
	return set.Err() == nil, nil
}

// trySweepLock makes sure only one Serve sweeps per interval.
func (c *Channel) trySweepLock(ctx context.Context, owner string, d time.Duration) (bool, error) {
	ok, err := c.client.SetNX(ctx, c.sweepLockKey(), owner, d).Result()
	if err != nil {
		return false, c.wrap("take sweep lock", err)
	}
	return ok, nil
}
