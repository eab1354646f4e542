package procs

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkStart is the per-executor cost of Start (log file, pid file,
// fork/exec of /bin/sleep, the reaper and the rotation loop) as a worker
// pays it for each executor; run it under `strace -c -f` to count the
// system calls per start.
func BenchmarkStart(b *testing.B) {
	dir := b.TempDir()
	var started []*Process
	b.Cleanup(func() {
		for _, p := range started {
			_ = p.Stop(context.Background(), true)
		}
	})
	for i := 0; b.Loop(); i++ {
		p, err := Start(Spec{ID: "e" + strconv.Itoa(i), Command: []string{"/bin/sleep", "1000"}, Dir: dir,
			LogDir: filepath.Join(dir, "logs"), PidDir: filepath.Join(dir, "pids")})
		if err != nil {
			b.Fatal(err)
		}
		started = append(started, p)
	}
}

// BenchmarkBareStart is the floor BenchmarkStart compares with: exec.Cmd.Start
// of /bin/sleep alone (what scripts/bench/scale's bare loop does).
func BenchmarkBareStart(b *testing.B) {
	var started []*exec.Cmd
	b.Cleanup(func() {
		for _, c := range started {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for b.Loop() {
		c := exec.Command("/bin/sleep", "1000")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		started = append(started, c)
	}
}
