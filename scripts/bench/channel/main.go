// Command channel benchmarks pkg/channel against raw go-redis pipelines that
// do the same Redis work, in the same run, on a redis-server it starts itself
// on a free port of 127.0.0.1.
//
// Workload (defaults): add 10,000 members of one channel spread over 10
// servers (timed over 10 such channels), then push 1,000 messages one after
// the other. The raw baseline issues the same writes with plain pipelines: the same SADDs and lease SETs
// for the adds; for each push SMEMBERS of the channel's servers, SMEMBERS of
// each server's members, and one XADD per server listing them. It prints
// both times and ratio = raw time / library time (1.0 = as fast as raw;
// the target is >= 0.8). The two sides alternate (who adds first, batches of
// 50 pushes) so that load from other processes hits both alike; times are
// summed over rounds.
//
// Usage: go run ./scripts/bench/channel [-members 10000] [-servers 10] [-pushes 1000] [-rounds 4]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/gear-run/gear/pkg/channel"
	"github.com/gear-run/gear/test/redistest"
	"github.com/redis/go-redis/v9"
)

type config struct {
	members, servers, pushes, rounds int
	payload                          int
}

func main() {
	var cfg config
	flag.IntVar(&cfg.members, "members", 10000, "members in the channel")
	flag.IntVar(&cfg.servers, "servers", 10, "servers the members are spread over")
	flag.IntVar(&cfg.pushes, "pushes", 1000, "messages pushed")
	flag.IntVar(&cfg.rounds, "rounds", 4, "rounds (times are summed over rounds)")
	flag.IntVar(&cfg.payload, "payload", 100, "message size in bytes")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench channel:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	if _, err := exec.LookPath(redistest.Binary); err != nil {
		return fmt.Errorf("redis-server not found (apt-get install -y redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-channel-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	srv, err := redistest.Launch(ctx, dir)
	if err != nil {
		return err
	}
	defer srv.Stop()

	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	ch, err := channel.New(ctx, channel.Options{Addr: srv.Addr(), Prefix: "bench:lib:", MemberTTL: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer ch.Close()

	ms := make([]channel.Membership, cfg.members)
	for i := range ms {
		ms[i] = channel.Membership{Channel: "bench", Member: fmt.Sprintf("user-%06d", i), Server: fmt.Sprintf("server-%02d", i%cfg.servers)}
	}
	data := make([]byte, cfg.payload)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}

	fmt.Printf("channel bench: %d members over %d servers, %d pushes of %d bytes, redis %s, %d rounds\n",
		cfg.members, cfg.servers, cfg.pushes, cfg.payload, srv.Addr(), cfg.rounds)
	// The machine may be shared: library and raw alternate in batches of
	// pushes so that load changes hit both sides alike. Inboxes are
	// emptied between batches (untimed) to keep Redis memory flat.
	const batch, addReps = 50, 10
	var libAdd, libPush, rawAdd, rawPush time.Duration
	for r := range cfg.rounds {
		if err := raw.FlushAll(ctx).Err(); err != nil {
			return err
		}
		// Adds: the "bench" channel the pushes use, then more channels
		// of the same size so that the add times are not one sample.
		for k := range addReps {
			name := "bench"
			if k > 0 {
				name = fmt.Sprintf("add-%d", k)
			}
			batch := make([]channel.Membership, len(ms))
			for i, m := range ms {
				m.Channel = name
				batch[i] = m
			}
			libFirst := (r+k)%2 == 0 // alternate who writes first
			for side := range 2 {
				t0 := time.Now()
				if (side == 0) == libFirst {
					if err := ch.AddMany(ctx, batch); err != nil {
						return fmt.Errorf("library add, round %d: %w", r, err)
					}
					libAdd += time.Since(t0)
				} else {
					if err := rawAddMany(ctx, raw, name, batch); err != nil {
						return fmt.Errorf("raw add, round %d: %w", r, err)
					}
					rawAdd += time.Since(t0)
				}
			}
		}
		for done := 0; done < cfg.pushes; done += batch {
			n := min(batch, cfg.pushes-done)
			d, err := libPushes(ctx, ch, n, len(ms), data)
			if err != nil {
				return fmt.Errorf("library push, round %d: %w", r, err)
			}
			libPush += d
			if d, err = rawPushes(ctx, raw, r*cfg.pushes+done, n, data); err != nil {
				return fmt.Errorf("raw push, round %d: %w", r, err)
			}
			rawPush += d
			if err := emptyInboxes(ctx, raw); err != nil {
				return err
			}
		}
	}
	line := func(what string, lib, raw time.Duration) {
		fmt.Printf("%-6s library %10v   raw %10v   ratio raw/library %.2fx\n", what, lib.Round(time.Microsecond), raw.Round(time.Microsecond), float64(raw)/float64(lib))
	}
	line("add", libAdd, rawAdd)
	line("push", libPush, rawPush)
	line("total", libAdd+libPush, rawAdd+rawPush)
	ratio := float64(rawAdd+rawPush) / float64(libAdd+libPush)
	verdict := "OK"
	if ratio < 0.8 {
		verdict = "BELOW TARGET"
	}
	fmt.Printf("result: %.2fx raw (target >= 0.80x): %s\n", ratio, verdict)
	return nil
}

func emptyInboxes(ctx context.Context, c *redis.Client) error {
	for _, pattern := range []string{"bench:lib:{srv:*}:inbox", "bench:raw:{srv:*}:inbox"} {
		keys, err := c.Keys(ctx, pattern).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

func libPushes(ctx context.Context, ch *channel.Channel, n, members int, data []byte) (time.Duration, error) {
	t0 := time.Now()
	for range n {
		res, err := ch.Push(ctx, "bench", data)
		if err != nil {
			return 0, err
		}
		if res.Members != members {
			return 0, fmt.Errorf("push reached %d members, want %d", res.Members, members)
		}
	}
	return time.Since(t0), nil
}

// The raw side does the library's Redis work with plain pipelines and the
// same key names (under another prefix).
const rawPrefix = "bench:raw:"

func rawAddMany(ctx context.Context, c *redis.Client, name string, ms []channel.Membership) error {
	const p = rawPrefix
	bySrv := map[string][]any{}
	var srvs []any
	for _, m := range ms {
		if _, ok := bySrv[m.Server]; !ok {
			srvs = append(srvs, m.Server)
		}
		bySrv[m.Server] = append(bySrv[m.Server], m.Member)
	}
	pipe := c.Pipeline()
	for s, members := range bySrv {
		pipe.SetNX(ctx, p+"{srv:"+s+"}:alive", "added", time.Hour)
		pipe.SAdd(ctx, p+"servers", s)
		pipe.SAdd(ctx, p+"{srv:"+s+"}:ch:"+name, members...)
		pipe.SAdd(ctx, p+"{srv:"+s+"}:channels", name)
	}
	pipe.SAdd(ctx, p+"{ch:"+name+"}:servers", srvs...)
	pipe.SAdd(ctx, p+"channels", name)
	_, err := pipe.Exec(ctx)
	return err
}

func rawPushes(ctx context.Context, c *redis.Client, first, n int, data []byte) (time.Duration, error) {
	const p = rawPrefix
	t0 := time.Now()
	for i := first; i < first+n; i++ {
		servers, err := c.SMembers(ctx, p+"{ch:bench}:servers").Result()
		if err != nil {
			return 0, err
		}
		pipe := c.Pipeline()
		cmds := make([]*redis.StringSliceCmd, len(servers))
		for j, s := range servers {
			cmds[j] = pipe.SMembers(ctx, p+"{srv:"+s+"}:ch:bench")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
		pipe = c.Pipeline()
		for j, s := range servers {
			members, _ := json.Marshal(cmds[j].Val())
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: p + "{srv:" + s + "}:inbox", Values: []any{
				"id", fmt.Sprintf("raw-%d", i), "channel", "bench", "members", members, "data", data}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}
