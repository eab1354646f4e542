package master

import (
	"testing"
	"time"
)

func TestDoorbellRingsWaitingWorkerOnly(t *testing.T) {
	d := newDoorbells()
	// A count other than the worker's answers at once.
	d.ring("w1")
	if n := d.wait("w1", 0, time.Hour, nil); n != 1 {
		t.Fatalf("wait with an old count = %d, want 1 at once", n)
	}
	got := make(chan uint64, 1)
	go func() { got <- d.wait("w1", 1, time.Hour, nil) }()
	other := make(chan uint64, 1)
	go func() { other <- d.wait("w2", 0, time.Hour, nil) }()
	// Ring w1 until its waiter answers (it may not be waiting yet).
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.ring("w1")
		select {
		case n := <-got:
			if n < 2 {
				t.Fatalf("woken with count %d, want >= 2", n)
			}
			select {
			case n := <-other:
				t.Fatalf("w2's waiter answered (%d) on w1's ring", n)
			default:
			}
			d.close()
			select {
			case <-other:
			case <-time.After(10 * time.Second):
				t.Fatal("close did not answer w2's waiter")
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("w1's waiter not woken by its rings")
		}
	}
}

func TestDoorbellHoldEnds(t *testing.T) {
	d := newDoorbells()
	start := time.Now()
	if n := d.wait("w1", 0, 50*time.Millisecond, nil); n != 0 {
		t.Fatalf("count %d, want 0", n)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("answered before the hold ended without a ring")
	}
	var nilBells *doorbells
	nilBells.ring("w1") // masters built by tests have none
}

// Requests for ids that are never rung (a typo, a worker that went away,
// a caller making ids up) leave nothing behind once they end; a waiter
// that ends does not take the ring from another one still waiting.
func TestDoorbellWaitersLeaveNothing(t *testing.T) {
	d := newDoorbells()
	for i := range 100 {
		d.wait("made-up-"+string(rune('a'+i%26))+time.Now().String(), 0, time.Millisecond, nil)
	}
	if n := d.pending(); n != 0 {
		t.Fatalf("%d entries left by ended waits, want 0", n)
	}
	long := make(chan uint64, 1)
	go func() { long <- d.wait("w1", 0, time.Hour, nil) }()
	d.wait("w1", 0, 10*time.Millisecond, nil) // shares w1's entry, gives up
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.ring("w1")
		select {
		case n := <-long:
			if n == 0 {
				t.Fatal("woken without a ring")
			}
			if p := d.pending(); p != 0 {
				t.Fatalf("%d entries left after the ring, want 0", p)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter still waiting was not woken by the ring")
		}
	}
}
