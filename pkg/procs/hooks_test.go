package procs

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// hookLog records the supervisor's OnStart/OnExit/OnRestart calls.
type hookLog struct {
	mu    sync.Mutex
	calls []string
}

func (h *hookLog) opts() SupervisorOptions {
	add := func(s string) { h.mu.Lock(); h.calls = append(h.calls, s); h.mu.Unlock() }
	return SupervisorOptions{
		OnStart:   func(int) { add("start") },
		OnExit:    func(r string) { add("exit:" + r) },
		OnRestart: func() { add("restart") },
	}
}

func (h *hookLog) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// The hooks metrics count: each start, each end with its reason, each
// restart under the policy.
func TestSupervisorHooks(t *testing.T) {
	tests := []struct {
		name    string
		restart cluster.RestartPolicy
		script  string
		want    []string
	}{
		{"success", cluster.RestartNever, "exit 0", []string{"start", "exit:success"}},
		{"failure", cluster.RestartNever, "exit 3", []string{"start", "exit:failure"}},
		{"signal", cluster.RestartNever, "kill -9 $$", []string{"start", "exit:signal"}},
		{"restarted", cluster.RestartOnFailure, "test -e marker && exit 0; touch marker; exit 1",
			[]string{"start", "exit:failure", "restart", "start", "exit:success"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := fastPolicy()
			pol.Restart = tt.restart
			var h hookLog
			s := NewSupervisor(shSpec(t, tt.name, tt.script), pol, h.opts())
			errc := runSupervisor(t, s)
			<-errc
			if got := h.get(); !slices.Equal(got, tt.want) {
				t.Fatalf("hooks %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("stopped and replaced", func(t *testing.T) {
		var h hookLog
		s := NewSupervisor(shSpec(t, "long", "sleep 60"), fastPolicy(), h.opts())
		errc := runSupervisor(t, s)
		waitFor(t, 10*time.Second, "running", func() bool { return s.Status().State == StateRunning })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Restart(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(ctx, true); err != nil {
			t.Fatal(err)
		}
		<-errc
		want := []string{"start", "exit:replaced", "start", "exit:stopped"}
		if got := h.get(); !slices.Equal(got, want) {
			t.Fatalf("hooks %v, want %v", got, want)
		}
	})
}
