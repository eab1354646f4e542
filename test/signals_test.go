package test

// The CLI against hostile surroundings, with the real binary: SIGINT and
// SIGTERM end a command stuck on a master that accepts the connection and
// never answers; `config check` refuses a FIFO (as the file or an include)
// at once instead of blocking; and it never echoes raw bytes of a binary
// file to the terminal.

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// cliEnv is the environment for a gear command run outside a cluster: no
// GEAR_* settings of the caller, no conf file.
func cliEnv(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GEAR_") {
			env = append(env, kv)
		}
	}
	return append(env, "GEAR_HOME="+t.TempDir())
}

// runGear runs the binary to its end, failing the test if it takes longer
// than timeout.
func runGear(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(gearBin, args...)
	cmd.Env = cliEnv(t)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("gear %v: %v", args, err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("gear %v still running after %v; stderr: %s", args, timeout, errb.String())
		return "", "", 0
	}
}

// hungMaster accepts connections and never answers; each accepted
// connection is announced on the returned channel.
func hungMaster(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

func TestCLISignalEndsStuckCommand(t *testing.T) {
	tests := []struct {
		args []string
		sig  syscall.Signal
		code int
	}{
		{[]string{"app", "list"}, syscall.SIGTERM, 143},
		{[]string{"app", "list"}, syscall.SIGINT, 130},
		{[]string{"logs", "-f", "1"}, syscall.SIGTERM, 143},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+" "+unix.SignalName(tt.sig), func(t *testing.T) {
			addr, accepted := hungMaster(t)
			cmd := exec.Command(gearBin, append([]string{"-master", addr}, tt.args...)...)
			cmd.Env = cliEnv(t)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{}) // closed once gear has ended
			go func() { _ = cmd.Wait(); close(done) }()
			t.Cleanup(func() {
				select {
				case <-done:
				default:
					_ = cmd.Process.Kill()
					<-done
				}
			})
			select {
			case <-accepted:
			case <-done:
				t.Fatalf("gear ended before it was stuck: %v; stderr: %s", cmd.ProcessState, stderr.String())
			case <-time.After(20 * time.Second):
				t.Fatal("gear never connected to the master")
			}
			// Stuck: connected, waiting for an answer that never comes.
			select {
			case <-done:
				t.Fatalf("gear ended on its own: %v; stderr: %s", cmd.ProcessState, stderr.String())
			case <-time.After(300 * time.Millisecond):
			}
			sent := time.Now()
			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("gear still running 10s after %s", unix.SignalName(tt.sig))
			}
			took := time.Since(sent)
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if ws.Signaled() || ws.ExitStatus() != tt.code {
				t.Fatalf("status %v, want exit %d; stderr: %s", ws, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "interrupted by "+unix.SignalName(tt.sig)) {
				t.Errorf("stderr %q, want it to say it was interrupted", stderr.String())
			}
			if strings.Contains(stderr.String(), "did not stop") {
				t.Errorf("the command ignored its context and was ended by the grace timer: %s", stderr.String())
			}
			t.Logf("exited %d, %v after %s", tt.code, took.Round(time.Millisecond), unix.SignalName(tt.sig))
		})
	}
}

func TestConfigCheckRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.conf")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	withInclude := filepath.Join(dir, "gear.conf")
	if err := os.WriteFile(withInclude, []byte("gear.hostname = \"a\"\ninclude file(\""+fifo+"\")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, conf := range []string{fifo, withInclude} {
		start := time.Now()
		_, stderr, code := runGear(t, 10*time.Second, "config", "check", "-conf", conf)
		if code != 1 || !strings.Contains(stderr, fifo+": not a regular file (a FIFO)") {
			t.Errorf("config check -conf %s: exit %d, stderr %q; want exit 1 and %q", conf, code, stderr, fifo+": not a regular file (a FIFO)")
		}
		t.Logf("%s: refused in %v", filepath.Base(conf), time.Since(start).Round(time.Millisecond))
	}
}

func TestConfigCheckBinaryGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	dir := t.TempDir()
	files := map[string][]byte{
		"escapes.conf": []byte("a = \x1b[31mred\x00\x07 b\n\"\x1b]0;pwned\x07\" = 1\n\xff\xfe = 1\nkey\x1b[2J = x\n"),
		"longkey.conf": []byte("\"" + strings.Repeat("\x1b[2J", 2000) + "\" { = \n"),
	}
	for i := range 5 {
		b := make([]byte, 4096)
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		files["random"+string(rune('0'+i))+".conf"] = b
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runGear(t, 20*time.Second, "config", "check", "-conf", path)
		if code == 0 {
			t.Errorf("%s: config check passed", name)
		}
		for _, s := range []string{stdout, stderr} {
			if !utf8.ValidString(s) {
				t.Fatalf("%s: output is not valid UTF-8: %q", name, s)
			}
			for _, r := range s {
				if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
					t.Fatalf("%s: output holds raw %U: %q", name, r, s)
				}
			}
		}
		if strings.Contains(stderr, strings.Repeat(`\x1b[2J`, 11)) {
			t.Errorf("%s: a long key is echoed in full: %.400s", name, stderr)
		}
	}
}
