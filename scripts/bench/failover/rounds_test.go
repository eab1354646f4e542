package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// gearBinary builds the gear binary once per test run ($GEAR_BIN wins).
func gearBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GEAR_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "gear")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/gear-run/gear").CombinedOutput()
	if err != nil {
		t.Fatalf("build gear: %v\n%s", err, out)
	}
	return bin
}

// etcdBinary finds etcd; without it the test fails under CI and is skipped
// elsewhere.
func etcdBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcd is not installed (apt-get install -y etcd-server etcd-client)")
		}
		t.Skip("etcd is not installed (apt-get install -y etcd-server etcd-client)")
	}
	return p
}

// TestRounds drives each kind of round once against real processes of
// both systems and checks that the harness sees a failover, survives a
// pause, and leaves no process behind (not even a stopped one).
func TestRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters of gear and etcd; skipped under -short")
	}
	tests := []struct {
		name string
		mk   func(t *testing.T, dir string) backend
	}{
		{"gear", func(t *testing.T, dir string) backend {
			t.Helper()
			b, err := newGear(gearBinary(t), dir, newHTTPClient())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"etcd", func(t *testing.T, dir string) backend {
			t.Helper()
			b, err := newEtcd(etcdBinary(t), dir, newHTTPClient())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			g := newGroup(tt.mk(t, dir), dir, log)
			closed := false
			t.Cleanup(func() {
				if !closed {
					g.close()
				}
			})

			sr, err := startupRound(ctx, g)
			if err != nil {
				t.Fatalf("startup: %v", err)
			}
			if sr.Leader <= 0 || sr.Write < sr.Leader {
				t.Errorf("startup = %+v: want a leader, then a write", sr)
			}

			leader, _, err := g.waitHealthy(ctx, healthyLimit)
			if err != nil {
				t.Fatal(err)
			}
			oldPid := g.pid(leader)
			kr, err := killRound(ctx, g)
			if err != nil {
				t.Fatalf("kill round: %v", err)
			}
			if kr.Miss != nil || kr.Failover <= 0 {
				t.Errorf("kill round = %+v: want a failover", kr)
			}
			if p := g.pid(leader); p == 0 || p == oldPid {
				t.Errorf("killed member %d: pid %d after the round (was %d): want it restarted", leader, p, oldPid)
			}

			if _, err := pauseRound(ctx, g, 100*time.Millisecond, 200*time.Millisecond); err != nil {
				t.Fatalf("pause round: %v", err)
			}

			var pids []int
			for i := range size {
				pids = append(pids, g.pid(i))
			}
			if err := g.signal(0, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			g.close()
			closed = true
			for _, pid := range pids {
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("pid %d still exists after close (kill 0: %v)", pid, err)
				}
			}
		})
	}
}
