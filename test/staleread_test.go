package test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"
)

// A leader cut off from the other masters must not answer a read from its
// own state: until its lease runs out it still believes it leads, while the
// majority may already have elected a new leader that acknowledges writes
// the old one never sees. Reads confirm leadership (master/quorum.go,
// readIndex), so the cut-off leader refuses them. Found by the fault suite.
func TestCutOffLeaderServesNoStaleRead(t *testing.T) {
	nc := newNetCluster(t, "")
	li, _ := nc.stable()
	if _, errOut, code := nc.on(nc.masters, "app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet"); code != 0 {
		t.Fatalf("write before the cut: %s", errOut)
	}
	// A read from the leader's own machine, against it alone, works.
	read := func() (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nc.lab.nodes[li], gearBin, "-conf", nc.conf, "-master", nc.masters[li], "app", "list", "-json")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	if _, errOut, code := read(); code != 0 {
		t.Fatalf("read from the leader before the cut: %s", errOut)
	}
	nc.lab.cut(li)
	cut := time.Now()
	// Within its lease (1.5 s at the default failover timeout) the old
	// leader still thinks it leads; every read in that window must fail.
	n := 0
	for time.Since(cut) < 2*time.Second {
		out, errOut, code := read()
		n++
		if code == 0 {
			t.Fatalf("the cut-off leader answered a read %v after the cut (it cannot know the majority's writes):\n%s", time.Since(cut).Round(time.Millisecond), out)
		}
		t.Logf("read %d refused after %v: %s", n, time.Since(cut).Round(time.Millisecond), errOut)
	}
	survivors := nc.others(li)
	waitFor(t, 20*time.Second, "the majority to accept a write", func() bool {
		_, _, code := nc.on(survivors, "app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
		return code == 0
	})
	nc.lab.heal(li)
	waitFor(t, 30*time.Second, "reads through the old leader to work again", func() bool {
		_, _, code := read()
		return code == 0
	})
}
