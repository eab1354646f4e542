// Command chat is an example gear application that uses a global channel:
// each instance serves the channel with its executor id as server id, adds a
// few members of its own, pushes a message every few seconds, and logs every
// delivery it receives. Run two instances (gear-app.conf does) and each one
// logs the other's pushes listing only its own members.
//
// It reads the Redis settings gear hands executors (GEAR_CHANNEL_REDIS, ...
// see docs/CHANNEL.md); outside gear, set GEAR_CHANNEL_REDIS=127.0.0.1:6379
// and GEAR_EXECUTOR_ID=chat-1 by hand. It is an example, not a chat server:
// there are no client connections.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/channel"
)

func main() {
	name := flag.String("channel", "lobby", "channel to join and push to")
	members := flag.Int("members", 3, "members this instance adds")
	every := flag.Duration("every", 5*time.Second, "time between pushes")
	count := flag.Int("count", 0, "pushes before exiting (0 = until SIGTERM)")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts, err := channel.FromEnv()
	if err != nil {
		log.Error("chat: exiting", "err", fmt.Errorf("%w (outside gear: GEAR_CHANNEL_REDIS=127.0.0.1:6379 GEAR_EXECUTOR_ID=chat-1 ./chat)", err))
		os.Exit(2)
	}
	if err := run(ctx, log, opts, *name, *members, *every, *count); err != nil {
		log.Error("chat: exiting", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, opts channel.Options, name string, nmembers int, every time.Duration, count int) error {
	if opts.ServerID == "" {
		return errors.New("GEAR_EXECUTOR_ID is not set: it names this server in the channel")
	}
	opts.Logger = log
	ch, err := channel.New(ctx, opts)
	if err != nil {
		return err
	}
	defer ch.Close()
	me := ch.ServerID()

	var mine []channel.Membership
	for i := range nmembers {
		mine = append(mine, channel.Membership{Channel: name, Member: fmt.Sprintf("%s/user-%d", me, i), Server: me})
	}
	join := func(ctx context.Context) {
		if err := ch.AddMany(ctx, mine); err != nil {
			log.Warn("chat: add members failed; will retry on next push", "err", err)
			return
		}
		log.Info("chat: members added", "channel", name, "members", len(mine))
	}

	srv := ch.Serve(ctx, me, func(d channel.Delivery) {
		log.Info("chat: delivery", "channel", d.Channel, "push", d.PushID, "members", d.Members,
			"data", string(d.Data), "redelivered", d.Redelivered)
	}, channel.OnLeaseLost(join))
	defer srv.Close()
	join(ctx)

	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 1; count == 0 || n <= count; n++ {
		select {
		case <-ctx.Done():
			return leave(log, ch, name, me, mine)
		case <-tick.C:
		}
		res, err := ch.Push(ctx, name, fmt.Appendf(nil, "hello #%d from %s", n, me))
		if err != nil {
			log.Warn("chat: push failed", "err", err)
			join(ctx)
			continue
		}
		all, err := ch.Members(ctx, name)
		log.Info("chat: pushed", "push", res.ID, "servers", res.Servers, "members", res.Members, "channel_size", len(all), "err", err)
	}
	return leave(log, ch, name, me, mine)
}

// leave removes this instance's members on a clean stop, so pushes do not
// wait in its inbox until the lease expires.
func leave(log *slog.Logger, ch *channel.Channel, name, me string, mine []channel.Membership) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids := make([]string, len(mine))
	for i, m := range mine {
		ids[i] = m.Member
	}
	if err := ch.Leave(ctx, name, me, ids...); err != nil {
		return err
	}
	log.Info("chat: left channel", "channel", name)
	return nil
}
