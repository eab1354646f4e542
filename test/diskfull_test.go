package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needRoot fails in CI (which runs as root) and skips elsewhere when the
// test cannot mount file systems.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and must run as root in CI")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	needProgram(t, "mount")
	needProgram(t, "umount")
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends (after the cluster, which is registered later, has
// stopped), also when the test fails.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs on %s: %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; unmounting lazily", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillDisk writes path until the file system under it is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

// post sends a JSON body to a master and returns the status and body.
func post(t *testing.T, addr, path, body string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 15 * time.Second}
	resp, err := cl.Post("http://"+addr+path, "application/json", bytes.NewBufferString(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A master whose data dir fills up answers writes with 507 "disk full"
// naming the directory (not "no quorum"), and takes writes again by itself
// once space is freed, without a restart. Both ways the log can break: the
// write that seals a log segment runs past its preallocated end (disk
// completely full), or that write fits but the next segment cannot be
// created (a little space left).
func TestMasterDiskFullRecovers(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		leave int64 // bytes left free after filling the disk
		// reopen: the master must reopen its log to recover. raft-wal
		// v0.4.1 rolls a failed seal write back itself, so that log
		// keeps working without a reopen.
		reopen bool
	}{
		{name: "seal write fails", leave: 0},
		{name: "next segment cannot be created", leave: 32 << 10, reopen: true},
	} {
		t.Run(tc.name, func(t *testing.T) { testDiskFull(t, tc.leave, tc.reopen) })
	}
}

func testDiskFull(t *testing.T, leave int64, reopen bool) {
	disk := mountTmpfs(t, "8m")
	c := newCluster(t, clusterOpts{masters: 1, masterDirs: []string{disk},
		// Small log segments, so that a few hundred writes fill one and the
		// master must create the next one on the full disk.
		conf: "gear.raft.segment-size = 64KiB\ngear.failover.timeout = 2s\n"})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	id := strings.TrimSpace(c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet"))
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("app submit printed %q, want an app id", id)
	}

	fill := filepath.Join(disk, "fill")
	fillDisk(t, fill)
	if leave > 0 {
		st, err := os.Stat(fill)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(fill, st.Size()-leave); err != nil {
			t.Fatal(err)
		}
	}
	scale := func(n int) (int, string) {
		return post(t, c.masters[0], "/api/v1/apps/"+id+"/scale", fmt.Sprintf(`{"instances":%d}`, n))
	}
	// Writes still land in the preallocated log segment until it is full;
	// then one fails.
	var status int
	var body string
	for i := 0; ; i++ {
		if i == 5000 {
			t.Fatalf("5000 writes on a full disk all succeeded; last answer %d %s", status, body)
		}
		if status, body = scale(1 + i%2); status != http.StatusOK {
			t.Logf("write %d on the full disk failed: %d %s", i, status, body)
			break
		}
	}
	checkFull := func(what string, status int, body string) {
		t.Helper()
		if status != http.StatusInsufficientStorage || !strings.Contains(body, "disk full") || !strings.Contains(body, disk) || strings.Contains(body, "quorum") {
			t.Fatalf("%s on a full disk: got %d %s, want 507 disk full naming %s", what, status, body, disk)
		}
	}
	checkFull("the first failed write", status, body)
	// Later writes say the same while the disk stays full, also while raft
	// steps down and re-elects this master (several times in 3 s with a 2 s
	// failover timeout); and so does the CLI.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		s, b := scale(1)
		checkFull("a later scale", s, b)
	}
	out, errOut, code := c.gear("app", "kill", id)
	if code == 0 || !strings.Contains(errOut, "disk full") || !strings.Contains(errOut, disk) {
		t.Fatalf("gear app kill on a full disk: exit %d, stdout %q, stderr %q; want a disk-full error naming %s", code, out, errOut, disk)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "writes to succeed again after space was freed", func() bool {
		s, _ := scale(2)
		return s == http.StatusOK
	})
	c.mustGear("app", "kill", id)
	if reopen && !strings.Contains(readFile(t, c.procs["master0"].log), "reopened the raft log") {
		t.Errorf("the master's log does not say it reopened the raft log")
	}
}

// A master started on a disk too small for its first log segment exits
// non-zero and says how much space it needs and where, instead of
// raft-wal's bare "no space left on device".
func TestMasterStartOnTooSmallDisk(t *testing.T) {
	needRoot(t)
	disk := mountTmpfs(t, "4m")
	c := newCluster(t, clusterOpts{masters: 1, masterDirs: []string{disk}}) // default 8MiB segments
	p := c.procs["master0"]
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("a master on a 4 MB disk did not exit")
	}
	if p.err == nil {
		t.Fatal("a master on a 4 MB disk exited 0")
	}
	log := readFile(t, p.log)
	for _, want := range []string{"not enough free space for the raft log", disk, "9.0 MiB needed", "gear.raft.segment-size"} {
		if !strings.Contains(log, want) {
			t.Errorf("the master's error lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "another master") {
		t.Errorf("the master blames another master for a small disk:\n%s", log)
	}
}

// masterStatus is one master's own /api/v1/status.
type masterStatus struct {
	State        string `json:"state"`
	CommitIndex  uint64 `json:"commit_index"`
	StorageError string `json:"storage_error"`
}

func statusOf(t *testing.T, addr string) masterStatus {
	t.Helper()
	var st masterStatus
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// With three masters, a full disk under the leader does not stop the
// cluster: another master takes over, writes go on, `gear masters` names
// the full master's problem, and that master catches up by itself once
// space is freed.
func TestDiskFullOneOfThreeMasters(t *testing.T) {
	needRoot(t)
	disks := []string{mountTmpfs(t, "8m"), mountTmpfs(t, "8m"), mountTmpfs(t, "8m")}
	c := newCluster(t, clusterOpts{masters: 3, masterDirs: disks, conf: "gear.raft.segment-size = 64KiB\n"})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	full := -1
	for i, m := range c.masters {
		if m == leader {
			full = i
		}
	}
	other := c.masters[(full+1)%3]
	id := strings.TrimSpace(c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet"))
	fillDisk(t, filepath.Join(disks[full], "fill"))

	// Write through another master until the full one's log breaks; every
	// write must go through within a failover.
	sawProblem := false
	for i := 0; !sawProblem; i++ {
		if i == 3000 {
			t.Fatalf("3000 writes and the full master %s reports no storage error", leader)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			s, b := post(t, other, "/api/v1/apps/"+id+"/scale", fmt.Sprintf(`{"instances":%d}`, 1+i%2))
			if s == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %d through %s still fails after 15 s: %d %s", i, other, s, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if i%50 == 0 || i > 400 {
			sawProblem = statusOf(t, leader).StorageError != ""
		}
	}
	st := statusOf(t, leader)
	if !strings.Contains(st.StorageError, "disk full") || !strings.Contains(st.StorageError, disks[full]) {
		t.Fatalf("the full master's status says %q, want disk full naming %s", st.StorageError, disks[full])
	}
	out := c.mustGear("masters")
	if !strings.Contains(out, "disk full") {
		t.Errorf("gear masters does not show the full master's problem:\n%s", out)
	}
	// The cluster keeps taking writes.
	for i := 0; i < 20; i++ {
		waitFor(t, 15*time.Second, "a write through "+other, func() bool {
			s, _ := post(t, other, "/api/v1/apps/"+id+"/scale", `{"instances":1}`)
			return s == http.StatusOK
		})
	}

	if err := os.Remove(filepath.Join(disks[full], "fill")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the full master to recover and catch up", func() bool {
		f, o := statusOf(t, leader), statusOf(t, other)
		return f.StorageError == "" && f.CommitIndex > 0 && f.CommitIndex >= o.CommitIndex
	})
	log := readFile(t, c.procs[c.masterName(leader)].log)
	if !strings.Contains(log, "reopened the raft log") {
		t.Errorf("the full master's log does not say it reopened the raft log")
	}
	// It led once, when its disk filled; a master that cannot write its log
	// asks for no votes, so it never led again while the disk was full.
	if n := strings.Count(log, "failed to commit logs"); n > 1 {
		t.Errorf("the full master won %d elections it could not serve (stepped down %d times); want it to stop campaigning while its log is broken", n-1, n)
	}
}
