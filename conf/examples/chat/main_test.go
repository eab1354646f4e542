package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/channel"
	"github.com/gear-run/gear/test/redistest"
)

// syncBuffer is a log sink shared by a goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTwoInstances runs two chat instances against a real Redis, as gear runs
// the bundle with instances = 2, and checks each logs the other's pushes.
func TestTwoInstances(t *testing.T) {
	r := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logs := map[string]*syncBuffer{"chat-1": {}, "chat-2": {}}
	var wg sync.WaitGroup
	errs := make(chan error, len(logs))
	for id, buf := range logs {
		opts := channel.Options{Addr: r.Addr(), ServerID: id, Prefix: "chat-test:"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- run(ctx, slog.New(slog.NewJSONHandler(buf, nil)), opts, "lobby", 2, 200*time.Millisecond, 8)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for id, buf := range logs {
		other := "chat-1"
		if id == "chat-1" {
			other = "chat-2"
		}
		out := buf.String()
		if !strings.Contains(out, `"data":"hello #`) || !strings.Contains(out, "from "+other) {
			t.Errorf("%s logged no delivery from %s:\n%s", id, other, out)
		}
		if !strings.Contains(out, `"members":["`+id+`/user-`) {
			t.Errorf("%s deliveries do not list its own members:\n%s", id, out)
		}
		if !strings.Contains(out, "chat: left channel") {
			t.Errorf("%s did not leave on exit:\n%s", id, out)
		}
	}
}
