package lifecycle

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// run is a daemon's Run: it works until its context ends, then releases.
func run(l *Life, ctx context.Context, release func()) error {
	ctx, end, err := l.Begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	<-ctx.Done()
	l.Release(release)
	return nil
}

func TestCloseEndsRunAndReleasesOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(cancel context.CancelFunc, l *Life, release func())
	}{
		{"close", func(_ context.CancelFunc, l *Life, rel func()) { l.Close(rel) }},
		{"context ends while closing", func(cancel context.CancelFunc, l *Life, rel func()) { go cancel(); l.Close(rel) }},
		{"stop then close", func(_ context.CancelFunc, l *Life, rel func()) { l.Stop(); l.Close(rel) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Life
			var released atomic.Int32
			rel := func() { released.Add(1) }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			began := make(chan struct{})
			go func() {
				c, end, err := l.Begin(ctx)
				close(began)
				if err != nil {
					ran <- err
					return
				}
				<-c.Done()
				l.Release(rel)
				end()
				ran <- nil
			}()
			<-began
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() { tc.stop(cancel, &l, rel) })
			}
			wg.Wait()
			select {
			case err := <-ran:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not end")
			}
			if n := released.Load(); n != 1 {
				t.Fatalf("released %d times, want once", n)
			}
			if err := run(&l, context.Background(), rel); !errors.Is(err, ErrClosed) {
				t.Fatalf("Run after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestCloseWithoutRun(t *testing.T) {
	var l Life
	n := 0
	l.Close(func() { n++ })
	l.Close(func() { n++ })
	l.Stop()
	if n != 1 {
		t.Fatalf("released %d times", n)
	}
}

// Serving ends with the server's error, or with nil when the context ends.
func TestServing(t *testing.T) {
	done := make(chan error, 1)
	boom := errors.New("port closed")
	done <- boom
	if err := Serving(context.Background(), done)(); err != boom {
		t.Fatalf("Serving = %v, want the server's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Serving(ctx, make(chan error))(); err != nil {
		t.Fatalf("Serving after the context ended = %v, want nil", err)
	}
}
