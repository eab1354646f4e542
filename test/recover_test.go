package test

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// Disaster recovery. 3 masters run an app; a snapshot is saved. Two
// masters are lost for good; the third, stopped, is recovered as a group
// of one with `gear masters recover`, which says what may be lost; started
// again it leads, keeps the app and takes writes. The snapshot loads into
// a fresh group, and a second restore into a group with applications is
// refused.
func TestRecoverSurvivorAndRestoreSnapshot(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 3, workers: 1})
	waitFor(t, 30*time.Second, "a leader", func() bool { return c.leader() != "" })
	id, _ := submitHello(t, c, 1)
	snap := filepath.Join(t.TempDir(), "state.snap")
	if out := c.mustGear("snapshot", "save", snap); !strings.Contains(out, "saved 1 application(s)") {
		t.Fatalf("snapshot save: %s", out)
	}

	c.kill("master1", syscall.SIGKILL)
	c.kill("master2", syscall.SIGKILL)
	c.kill("master0", syscall.SIGTERM)
	out := c.mustGear("masters", "recover", "-datadir", filepath.Join(c.dir, "master0"), "-voters", c.masters[0])
	t.Logf("gear masters recover:\n%s", out)
	for _, want := range []string{"the group is now " + c.masters[0], "kept: 1 application(s)", "may be lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("masters recover output lacks %q:\n%s", want, out)
		}
	}
	p := c.startMaster(0)
	waitFor(t, 30*time.Second, "the recovered master to lead alone", func() bool {
		ms := c.mastersView()
		return len(ms) == 1 && ms[0].State == "leader" && ms[0].Quorum
	})
	if a := c.app(id); a == nil {
		t.Fatalf("app %s lost by the recovery", id)
	}
	waitFor(t, 30*time.Second, "app "+id+" RUNNING", func() bool {
		a := c.app(id)
		return a != nil && a.State == cluster.AppRunning
	})
	c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "0", "-quiet")
	if !strings.Contains(readFile(t, p.log), "gear.cluster.masters differs from the membership stored") {
		t.Error("the recovered master does not warn that gear.conf lists other masters")
	}

	// Restore into a fresh group of one.
	f := newCluster(t, clusterOpts{masters: 1})
	waitFor(t, 30*time.Second, "the fresh group's leader", func() bool { return f.leader() != "" })
	if out := f.mustGear("snapshot", "restore", snap); !strings.Contains(out, "restored 1 application(s) and 1 worker(s)") {
		t.Fatalf("snapshot restore: %s", out)
	}
	if a := f.app(id); a == nil || a.Name != "hello" {
		t.Fatalf("after restore, app %s = %+v", id, a)
	}
	_, errOut, code := f.gear("snapshot", "restore", snap)
	if code == 0 || !strings.Contains(errOut, "restored into a fresh group only") {
		t.Errorf("second restore: exit %d, %s; want a refusal", code, errOut)
	}
}
