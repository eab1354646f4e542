package periodic

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Every calls fn repeatedly and returns once its context ends, never
// calling fn again after that.
func TestEveryStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, func(time.Time) {
			if calls.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("fn called %d times, want 3 (none after cancel)", n)
	}
}
