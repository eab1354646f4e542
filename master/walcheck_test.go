package master

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"

	"github.com/gear-run/gear/pkg/cluster"
)

// startTestRaft starts a one-master raft group on a fresh port with its
// log under dir.
func startTestRaft(t *testing.T, dir string) (*raftNode, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := ln.Addr().String()
	n, err := startRaft(dir, self, []string{self}, 2*time.Second, 8<<20, streamLayer{Listener: ln}, &fsm{state: newState()}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		ln.Close()
		return nil, err
	}
	t.Cleanup(func() { n.close(); ln.Close() })
	return n, nil
}

// writeTestLog writes a real log: a one-master group that commits n
// commands one by one (each its own write batch), then stops.
func writeTestLog(t *testing.T, dir string, n int) (last uint64) {
	t.Helper()
	node, err := startTestRaft(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for node.raft.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("the lone master did not become leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range n {
		b, err := encodeCommand(command{Op: opRestart, App: "1", Restart: &cluster.RestartRequest{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := node.raft.Apply(b, 5*time.Second).Error(); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	last = node.raft.LastIndex()
	node.close()
	return last
}

// walFrame is one frame of a raft-wal segment file.
type walFrame struct {
	typ        byte
	off, size  int64 // header offset, payload size
	payloadOff int64
}

// segmentFrames parses the frames of the one segment file in walDir.
func segmentFrames(t *testing.T, walDir string) (string, []walFrame) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if len(files) != 1 {
		t.Fatalf("want one segment file in %s, got %v", walDir, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var frames []walFrame
	for off := int64(32); off+8 <= int64(len(b)); {
		typ := b[off]
		switch typ {
		case 1, 2: // entry, index
			size := int64(binary.LittleEndian.Uint32(b[off+4 : off+8]))
			frames = append(frames, walFrame{typ: typ, off: off, size: size, payloadOff: off + 8})
			off += 8 + size + (8-size%8)%8
		case 3: // commit
			frames = append(frames, walFrame{typ: typ, off: off})
			off += 8
		default:
			return files[0], frames
		}
	}
	return files[0], frames
}

func overwrite(t *testing.T, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// An entry in the middle of the log that does not read back (what an
// over-large entry or a damaged disk leaves) stops the master with the
// recovery step, instead of a panic in raft.NewRaft.
func TestCorruptLogEntryRefusesToStartWithTheRecoveryStep(t *testing.T) {
	dir := t.TempDir()
	last := writeTestLog(t, dir, 8)
	walDir := filepath.Join(dir, "wal")
	file, frames := segmentFrames(t, walDir)
	var entries []walFrame
	for _, f := range frames {
		if f.typ == 1 {
			entries = append(entries, f)
		}
	}
	if uint64(len(entries)) != last {
		t.Fatalf("parsed %d entries, the log has %d", len(entries), last)
	}
	// Damage entry 5: committed long before the tail, so raft-wal's
	// recovery (which checks the last batch) does not see it.
	bad := entries[4]
	overwrite(t, file, bad.payloadOff, []byte(strings.Repeat("\xff", int(bad.size))))

	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("starting on a corrupt log panicked: %v", p)
			}
		}()
		_, err = startTestRaft(t, dir)
	}()
	if err == nil {
		t.Fatal("a master started on a log whose entry 5 cannot be read")
	}
	for _, want := range []string{"the raft log in " + walDir + " is corrupt after index 4", "to recover, stop this master, move " + walDir + " away", "catch up from the other masters"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// The recovery step works: with the log moved away the master starts.
	if err := os.Rename(walDir, walDir+".corrupt"); err != nil {
		t.Fatal(err)
	}
	if _, err := startTestRaft(t, dir); err != nil {
		t.Fatalf("after moving the log away: %v", err)
	}
}

// A torn tail (the last write batch incomplete: its commit frame never made
// it to disk whole) was never acknowledged: the master starts without it.
func TestTornLogTailIsTruncatedAndTheMasterStarts(t *testing.T) {
	dir := t.TempDir()
	last := writeTestLog(t, dir, 5)
	file, frames := segmentFrames(t, filepath.Join(dir, "wal"))
	commit := frames[len(frames)-1]
	if commit.typ != 3 {
		t.Fatalf("the last frame is of type %d, want a commit frame", commit.typ)
	}
	// Spoil the last commit frame's checksum and the entry before it.
	entry := frames[len(frames)-2]
	overwrite(t, file, commit.off+4, []byte{0xde, 0xad, 0xbe, 0xef})
	overwrite(t, file, entry.payloadOff, []byte{0xff, 0xff, 0xff, 0xff})

	node, err := startTestRaft(t, dir)
	if err != nil {
		t.Fatalf("a torn tail must not stop the master: %v", err)
	}
	if got := node.raft.LastIndex(); got != last-1 {
		t.Fatalf("last index %d after recovery, want %d (the torn batch dropped)", got, last-1)
	}
}

// A follower that clears a suffix of its log (raft's "clearing log suffix"
// after a leader change) and is then killed must start again: raft-wal
// v0.4.0 marked the truncated tail segment sealed without writing its
// index block, so the restarted master found its log "corrupt" (sealed
// segment has no index block) and refused to start. Found by the fault
// suite (seed 4: a partition, then kill -9 of the master); fixed upstream
// in raft-wal v0.4.1 (hashicorp/raft-wal#31, #33), which gear now uses.
func TestLogSurvivesTailTruncation(t *testing.T) {
	dir := t.TempDir()
	open := func() *raftwal.WAL {
		w, err := raftwal.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := open()
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")})
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(9, 10); err != nil { // clearing log suffix
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{{Index: 9, Term: 2, Type: raft.LogCommand, Data: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	w.Close() // or killed: the sealed segment is already in the meta store
	w = open()
	defer w.Close()
	if err := checkLog(w, dir); err != nil {
		t.Fatalf("the log after a tail truncation does not read back: %v", err)
	}
}
