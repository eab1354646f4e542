// Package lifecycle gives a daemon (master.Master, worker.Worker) its
// New / Run / Close contract in one place:
//
//   - Close ends a running Run and waits for it, then releases what New
//     acquired; it may be called any number of times, also concurrently
//     with Run's end.
//   - Run releases the same things when it ends by itself (its context
//     ended); whoever gets there first releases, exactly once.
//   - Run after Close fails with ErrClosed.
//
// It holds no resources itself and knows nothing of ports or files: the
// daemon passes its release function.
package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Begin once Close was called.
var ErrClosed = errors.New("closed")

// Life is a daemon's lifetime. The zero value is ready to use.
type Life struct {
	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc // ends the running Run; nil before Begin
	done   chan struct{}      // closed when the running Run has ended

	release sync.Once
}

// Begin starts a Run: it returns the context Run works under (ended by
// Close or Stop, or when ctx ends) and end, which Run must call when it
// returns, after it released. Begin fails with ErrClosed after Close.
func (l *Life) Begin(ctx context.Context) (runCtx context.Context, end func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, ErrClosed
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	return runCtx, func() { cancel(); close(done) }, nil
}

// Stop ends the running Run's context, without waiting for it; before
// Begin it does nothing.
func (l *Life) Stop() {
	l.mu.Lock()
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Release runs release unless it already ran (Run's end, New's failure).
func (l *Life) Release(release func()) { l.release.Do(release) }

// Close refuses further Runs, ends the running one and waits for its end,
// then runs release unless it already ran.
func (l *Life) Close(release func()) {
	l.mu.Lock()
	l.closed = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	l.Release(release)
}

// Begun reports whether a Run has begun (it may have ended since).
func (l *Life) Begun() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done != nil
}

// Serving is an errgroup function that waits for a daemon's server: it
// returns the server's error once it reports one on done, or nil when ctx
// ends first (the daemon is shutting down).
func Serving(ctx context.Context, done <-chan error) func() error {
	return func() error {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}
