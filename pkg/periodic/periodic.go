// Package periodic runs a function at a fixed interval until its context
// ends: the loop every long-running part of gear repeats (the leader's
// scheduler, jar store GC, promotion of caught-up masters, quorum
// confirmation, gossip re-join, bundle cache eviction).
//
// It is not a scheduler: calls never overlap, and a call that takes longer
// than the interval delays the next one (ticks in between are dropped, as
// with time.Ticker).
package periodic

import (
	"context"
	"time"
)

// Every calls fn every interval until ctx ends, and never after it ended.
// The first call comes one interval after the start. fn gets the time of
// its tick.
func Every(ctx context.Context, interval time.Duration, fn func(now time.Time)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if ctx.Err() != nil { // both were ready: the end wins
				return
			}
			fn(now)
		}
	}
}
