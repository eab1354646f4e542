package procs

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A descriptor this process inherited without close-on-exec (here: a pipe
// made without it) reaches a started process until CloseInheritedOnExec
// marks it; after that it stays open here and the child does not get it.
func TestCloseInheritedOnExec(t *testing.T) {
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil { // no O_CLOEXEC: like an inherited one
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	fd := p[1]
	seen := func(name string) string {
		t.Helper()
		spec := shSpec(t, name, fmt.Sprintf(`if [ -e /proc/self/fd/%d ]; then echo fd=open; else echo fd=closed; fi`, fd))
		proc, err := Start(spec)
		if err != nil {
			t.Fatal(err)
		}
		proc.Wait()
		var out string
		waitFor(t, 5*time.Second, "the child's answer", func() bool {
			b, _ := os.ReadFile(spec.LogFile())
			out = string(b)
			return strings.Contains(out, "fd=")
		})
		_ = proc.Stop(context.Background(), true)
		return out
	}
	if out := seen("before"); !strings.Contains(out, "fd=open") {
		t.Fatalf("before: the child said %q; the test cannot show anything (want the pipe passed on)", out)
	}
	if err := CloseInheritedOnExec(); err != nil {
		t.Fatal(err)
	}
	if out := seen("after"); !strings.Contains(out, "fd=closed") {
		t.Fatalf("after CloseInheritedOnExec the child said %q, want fd=closed", out)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the descriptor was closed here too: %v", err)
	}
}
