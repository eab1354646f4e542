package redistest

import (
	"testing"
)

func TestStartRestartStop(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
	for range 2 { // a second Stop is a no-op
		if err := s.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	if err := ping(s.Addr()); err == nil {
		t.Fatal("server still answers after Stop")
	}
}
