package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a command that blocks in something that does
// not honour the context, selected by GEAR_CLI_BLOCK=grace (an operator
// command: interruptGrace applies) or =daemon (no grace: only a second
// signal ends it).
func init() {
	mode := os.Getenv("GEAR_CLI_BLOCK")
	if mode == "" {
		return
	}
	grace := 300 * time.Millisecond
	if mode == "daemon" {
		grace = 0
	}
	ctx, stop := signalContext(context.Background(), os.Stderr, grace)
	defer stop()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("cancelled:", context.Cause(ctx))
	select {} // blocked for good, ignoring the context
}

func TestSignalEndsBlockedCommand(t *testing.T) {
	later := duplicateWindow + 500*time.Millisecond
	tests := []struct {
		mode    string
		signals []syscall.Signal
		gaps    []time.Duration // before each signal after the first
		code    int             // exit code, or -1 for killed by
		killed  syscall.Signal  // the signal that killed it
	}{
		{"grace", []syscall.Signal{syscall.SIGTERM}, nil, 143, 0},
		{"grace", []syscall.Signal{syscall.SIGINT}, nil, 130, 0},
		{"daemon", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}, []time.Duration{later}, -1, syscall.SIGTERM},
		{"daemon", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}, []time.Duration{later}, -1, syscall.SIGINT},
		// Ctrl-C to the process group and a script's SIGTERM at once are
		// one request: the daemon goes on stopping; only a signal after
		// duplicateWindow ends it.
		{"daemon", []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGTERM}, []time.Duration{10 * time.Millisecond, later}, -1, syscall.SIGTERM},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.mode, tt.signals), func(t *testing.T) {
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), "GEAR_CLI_BLOCK="+tt.mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			buf := make([]byte, 64)
			n, _ := out.Read(buf) // "ready": the handler is installed
			if !strings.Contains(string(buf[:n]), "ready") {
				t.Fatalf("helper said %q", buf[:n])
			}
			done := make(chan error, 1)
			go func() {
				for {
					if _, err := out.Read(buf); err != nil {
						break
					}
				}
				done <- cmd.Wait()
			}()
			for i, sig := range tt.signals {
				if i > 0 {
					// The signals so far must not have ended it (daemon:
					// no grace; within duplicateWindow: the same request).
					select {
					case err := <-done:
						t.Fatalf("ended after %v: %v", tt.signals[:i], err)
					case <-time.After(tt.gaps[i-1]):
					}
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
			}
			var werr error
			select {
			case werr = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10s after %v", tt.signals)
			}
			var ee *exec.ExitError
			if !errors.As(werr, &ee) {
				t.Fatalf("wait: %v, want a non-zero exit", werr)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if tt.code >= 0 && (ws.Signaled() || ws.ExitStatus() != tt.code) {
				t.Fatalf("status %v, want exit %d; stderr %q", ws, tt.code, stderr.String())
			}
			if tt.code < 0 && (!ws.Signaled() || ws.Signal() != tt.killed) {
				t.Fatalf("status %v, want killed by %v", ws, tt.killed)
			}
			if tt.code >= 0 && !strings.Contains(stderr.String(), "did not stop within") {
				t.Errorf("stderr %q, want it to say why it exits", stderr.String())
			}
		})
	}
}

func TestIsDaemon(t *testing.T) {
	cmds := Registry(Command{Name: "master", Daemon: true}, Command{Name: "worker", Daemon: true}, Command{Name: "local", Daemon: true})
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"master", "-ip", "a"}, true},
		{[]string{"-conf", "x.conf", "worker"}, true},
		{[]string{"-master", "worker:1", "app", "list"}, false},
		{[]string{"-master=a:1", "local"}, true},
		{[]string{"-token", "master", "logs", "3"}, false},
		{[]string{"config", "check"}, false},
		{[]string{"-bogus", "master"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := isDaemon(cmds, tt.args); got != tt.want {
			t.Errorf("isDaemon(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}
