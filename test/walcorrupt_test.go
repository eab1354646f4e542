package test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// corruptWALEntry fills the payload of entry number n (1-based, in file
// order) of the one raft-wal segment file in walDir with 0xff bytes.
func corruptWALEntry(t *testing.T, walDir string, n int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if len(files) != 1 {
		t.Fatalf("want one segment file in %s, got %v", walDir, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for off := int64(32); off+8 <= int64(len(b)); {
		switch b[off] {
		case 1, 2: // entry, index frame: 8-byte header, payload padded to 8
			size := int64(binary.LittleEndian.Uint32(b[off+4 : off+8]))
			if b[off] == 1 {
				seen++
				if seen == n {
					for i := off + 8; i < off+8+size; i++ {
						b[i] = 0xff
					}
					if err := os.WriteFile(files[0], b, 0o600); err != nil {
						t.Fatal(err)
					}
					return
				}
			}
			off += 8 + size + (8-size%8)%8
		case 3: // commit frame
			off += 8
		default:
			t.Fatalf("the segment holds only %d entries, want at least %d", seen, n)
		}
	}
}

// A master whose raft log holds an entry that does not read back used to
// panic in raft.NewRaft at every start. It now exits with the recovery
// step, and following it brings the master back.
func TestMasterWithCorruptLogExitsWithTheRecoveryStep(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	for _, name := range []string{"a", "b", "c"} {
		c.submit(limitsBundle(t, name, map[string]string{"web": "instances = 0"}))
	}
	c.kill("master0", syscall.SIGTERM)
	walDir := filepath.Join(c.dir, "master0", "raft", "wal")
	corruptWALEntry(t, walDir, 3)

	p := c.startMaster(0)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("a master on a corrupt log neither started serving nor exited")
	}
	log := readFile(t, p.log)
	if p.err == nil {
		t.Fatalf("the master exited 0 on a corrupt log:\n%s", log)
	}
	if strings.Contains(log, "panic:") || strings.Contains(log, "goroutine ") {
		t.Fatalf("the master panicked:\n%s", log)
	}
	for _, want := range []string{"the raft log in " + walDir + " is corrupt after index 2", "move " + walDir + " away"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the master's error lacks %q:\n%s", want, log)
		}
	}
	// The recovery step, as written.
	if err := os.Rename(walDir, walDir+".corrupt"); err != nil {
		t.Fatal(err)
	}
	c.startMaster(0)
	waitFor(t, 30*time.Second, "the master to lead again after the log was moved away", func() bool { return c.leader() == c.masters[0] })
}
