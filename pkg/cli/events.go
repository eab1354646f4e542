package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// eventsStall is how long a followed stream may stay silent before it is
// taken for dead: the masters send an empty line every few seconds.
const eventsStall = 10 * time.Second

func events(fs *flag.FlagSet) Action {
	follow := fs.Bool("f", false, "follow: print events as they happen; on a master's failure, resume on another after the last event printed")
	since := fs.String("since", "", "print the events after this event `id` (INDEX.SEQ, the id field of -json) or raft index (default: all the master holds)")
	return func(ctx context.Context, c *Call) error {
		cl, err := c.Client()
		if err != nil {
			return err
		}
		cursor := *since
		for {
			last, master, err := streamEvents(ctx, cl, c, cursor, *follow)
			if last != "" {
				cursor = last
			}
			if ctx.Err() != nil {
				return context.Cause(ctx) // interrupted: Main exits 128+signal
			}
			if !*follow {
				return err
			}
			from := "the masters"
			if master != "" {
				from = master
				preferNext(cl, master)
			}
			resume := "the start"
			if cursor != "" {
				resume = "event " + cursor
			}
			if err == nil {
				err = fmt.Errorf("the stream ended")
			}
			fmt.Fprintf(c.Stderr, "gear events: lost %s (%v); resuming after %s\n", from, err, resume)
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// streamEvents prints one master's stream until it ends. It returns the id
// of the last event printed and the master that answered.
func streamEvents(ctx context.Context, cl *cluster.Client, c *Call, since string, follow bool) (last, master string, err error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if follow {
		q.Set("follow", "1")
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, err := cl.Stream(sctx, cluster.Request{Method: "GET", Path: "/api/v1/events", Query: q})
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	master = resp.Request.URL.Host
	var watchdog *time.Timer
	if follow {
		watchdog = time.AfterFunc(eventsStall, func() {
			cancel(fmt.Errorf("no data for %s (the master sends an empty line every few seconds)", eventsStall))
		})
		defer watchdog.Stop()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if watchdog != nil {
			watchdog.Reset(eventsStall)
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e cluster.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return last, master, fmt.Errorf("master %s sent a line that is not an event: %w", master, err)
		}
		if e.Type == "gap" {
			fmt.Fprintln(c.Stderr, "gear events: warning: "+e.Message)
			continue
		}
		if c.JSON {
			b, _ := json.Marshal(e)
			fmt.Fprintln(c.Stdout, string(b))
		} else {
			fmt.Fprintf(c.Stdout, "%s  %-9s %-8s %s\n", e.Time.Local().Format("15:04:05.000"), e.ID, e.Type, e.Message)
		}
		last = e.ID
	}
	if err := sc.Err(); err != nil {
		if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
			err = cause
		}
		return last, master, err
	}
	return last, master, nil
}

// preferNext makes the client try the master after failed first.
func preferNext(cl *cluster.Client, failed string) {
	ms := cl.Masters()
	if i := slices.Index(ms, failed); i >= 0 && len(ms) > 1 {
		cl.Prefer(ms[(i+1)%len(ms)])
	}
}
