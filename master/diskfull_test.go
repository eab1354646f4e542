package master

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testStore opens a logStore in a temp dir with free space set by *free.
func testStore(t *testing.T, dir string, free *uint64) *logStore {
	t.Helper()
	s := &logStore{dir: dir, segSize: 64 << 10, log: quietLog(), free: func(string) (uint64, error) { return *free, nil }}
	s.hlog = hclogFor(s)
	if err := s.checkSpace(); err != nil {
		t.Fatal(err)
	}
	if err := s.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func entries(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d", i))})
	}
	return out
}

func TestSpaceCheckAtStart(t *testing.T) {
	dir := t.TempDir()
	free := uint64(4 << 20)
	s := &logStore{dir: dir, segSize: 8 << 20, log: quietLog(), free: func(string) (uint64, error) { return free, nil }}
	err := s.checkSpace()
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a new log with 4 MiB free and 8 MiB segments: %v, want ErrDiskFull", err)
	}
	for _, want := range []string{dir, "4.0 MiB free", "9.0 MiB needed", "gear.raft.segment-size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "another master") {
		t.Errorf("error %q blames another master for a small disk", err)
	}
	// An existing log (its tail segment is already preallocated) starts
	// with little room, and warns.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001-0000000000000000.wal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.checkSpace(); err != nil {
		t.Fatalf("an existing log with 4 MiB free: %v", err)
	}
	free = 512 << 10
	if err := s.checkSpace(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "1.0 MiB needed") {
		t.Fatalf("an existing log with 512 KiB free: %v, want ErrDiskFull needing 1.0 MiB", err)
	}
}

// A broken log says "disk full" when the disk is full, reopens only once
// there is room, and then takes writes again.
func TestLogStoreReopensOnceThereIsRoom(t *testing.T) {
	free := uint64(64 << 20)
	s := testStore(t, t.TempDir(), &free)
	if err := s.StoreLogs(entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	if p := s.problem(); p != nil {
		t.Fatalf("healthy log reports %v", p)
	}

	s.fail(fmt.Errorf("write x.wal: %w", syscall.ENOSPC))
	free = 0
	p := s.problem()
	if !errors.Is(p, ErrDiskFull) || !strings.Contains(p.Error(), s.dir) || !strings.Contains(p.Error(), "retries by itself") {
		t.Fatalf("problem after ENOSPC = %v, want ErrDiskFull naming %s", p, s.dir)
	}
	if s.recoverLog() {
		t.Fatal("reopened with no free space")
	}
	free = 64 << 20
	if !s.recoverLog() {
		t.Fatal("did not reopen with room")
	}
	if p := s.problem(); p != nil {
		t.Fatalf("after reopen: %v", p)
	}
	if err := s.StoreLogs(entries(11, 12)); err != nil {
		t.Fatalf("write after reopen: %v", err)
	}
	var l raft.Log
	if err := s.GetLog(5, &l); err != nil || string(l.Data) != "entry 5" {
		t.Fatalf("entry 5 after reopen: %v %q", err, l.Data)
	}

	// Another failure with room on the disk is not "disk full".
	s.fail(errors.New("input/output error"))
	if p := s.problem(); !errors.Is(p, ErrStorage) || errors.Is(p, ErrDiskFull) {
		t.Fatalf("problem after EIO with room = %v, want ErrStorage", p)
	}
}

// Regression: a batch that sealed a segment and failed to write left its
// index frame on disk without a commit frame; raft-wal then recovers the
// tail as sealed and every append fails with "segment is sealed", also
// after a restart. The store cuts those frames off before opening.
func TestReopenAfterFailedSealWrite(t *testing.T) {
	dir := t.TempDir()
	free := uint64(64 << 20)
	s := testStore(t, dir, &free)
	if err := s.StoreLogs(entries(1, 20)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tail, ok, err := tailSegment(dir)
	if err != nil || !ok {
		t.Fatalf("tail segment: %v %v", ok, err)
	}
	f, err := os.OpenFile(tail, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	end, stop, err := lastCommitEnd(f)
	if err != nil || end == 0 || stop != end {
		t.Fatalf("lastCommitEnd = %d, %d, %v; want a commit and nothing after it", end, stop, err)
	}
	// What a failed sealing write leaves: an entry frame and an index frame,
	// no commit frame.
	var junk bytes.Buffer
	frame := func(typ byte, payload []byte) {
		var h [8]byte
		h[0] = typ
		binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
		junk.Write(h[:])
		junk.Write(payload)
		junk.Write(make([]byte, (8-len(payload)%8)%8))
	}
	frame(walFrameEntry, []byte("entry 21, never acknowledged"))
	frame(walFrameIndex, make([]byte, 21*4))
	if _, err := f.WriteAt(junk.Bytes(), end); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// raft-wal alone: the tail comes back sealed (logged, not asserted, in
	// case a later raft-wal fixes its recovery).
	// (raft-wal's Close leaves its meta store, and the bolt file lock, open.)
	meta := &metadb.BoltMetaDB{}
	if w, err := raftwal.Open(dir, raftwal.WithMetaStore(meta)); err == nil {
		if err := w.StoreLogs(entries(21, 21)); errors.Is(err, raftwal.ErrSealed) {
			t.Logf("raft-wal alone after a failed seal write: %v", err)
		}
		_ = w.Close()
	}
	_ = meta.Close()
	// The open above may have changed nothing on disk: the frames are still
	// there for the store to cut.
	s2 := testStore(t, dir, &free)
	if last, _ := s2.LastIndex(); last != 20 {
		t.Fatalf("last index after reopen = %d, want 20", last)
	}
	if err := s2.StoreLogs(entries(21, 25)); err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
	var l raft.Log
	if err := s2.GetLog(21, &l); err != nil || string(l.Data) != "entry 21" {
		t.Fatalf("entry 21: %v %q", err, l.Data)
	}
}

func TestLastCommitEnd(t *testing.T) {
	hdr := make([]byte, walFileHeaderLen)
	frame := func(typ byte, n int) []byte {
		b := make([]byte, 8+n+(8-n%8)%8)
		b[0] = typ
		binary.LittleEndian.PutUint32(b[4:], uint32(n))
		return b
	}
	commit := []byte{walFrameCommit, 0, 0, 0, 1, 2, 3, 4}
	cat := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{hdr}, parts...), nil) }
	for _, tc := range []struct {
		name      string
		file      []byte
		end, stop int64
	}{
		{"empty file", nil, 0, 32},
		{"header only, zeros after", cat(make([]byte, 64)), 0, 32},
		{"one committed batch", cat(frame(walFrameEntry, 5), commit, make([]byte, 64)), 32 + 16 + 8, 32 + 16 + 8},
		{"uncommitted entry after a commit", cat(frame(walFrameEntry, 5), commit, frame(walFrameEntry, 9)), 56, 56 + 24},
		{"index frame without commit", cat(frame(walFrameEntry, 8), commit, frame(walFrameIndex, 4)), 56, 56 + 16},
		{"sealed: index then commit", cat(frame(walFrameEntry, 8), frame(walFrameIndex, 4), commit), 32 + 16 + 16 + 8, 32 + 16 + 16 + 8},
		{"torn header after commit", cat(frame(walFrameEntry, 8), commit, []byte{9, 9, 9, 9, 9, 9, 9, 9}), 56, 56},
		{"length past the end", cat(commit, frame(walFrameEntry, 8)[:8]), 40, 40 + 16},
	} {
		end, stop, err := lastCommitEnd(bytes.NewReader(tc.file))
		if err != nil || end != tc.end || stop != tc.stop {
			t.Errorf("%s: lastCommitEnd = %d, %d, %v; want %d, %d", tc.name, end, stop, err, tc.end, tc.stop)
		}
	}
}

func TestStorageErrorsStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: the master's data dir /x is full", ErrDiskFull), http.StatusInsufficientStorage},
		{fmt.Errorf("%w: the raft log failed", ErrStorage), http.StatusServiceUnavailable},
	} {
		rec := httptest.NewRecorder()
		writeError(rec, tc.err)
		if rec.Code != tc.want {
			t.Errorf("writeError(%v) = %d, want %d", tc.err, rec.Code, tc.want)
		}
	}
}

// A log that breaks again right after each reopen (not a full disk) is
// reopened with growing pauses; a successful write resets them.
func TestReopenBacksOff(t *testing.T) {
	free := uint64(64 << 20)
	s := testStore(t, t.TempDir(), &free)
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }
	eio := errors.New("input/output error")

	s.fail(eio)
	if !s.recoverLog() {
		t.Fatal("first reopen did not happen")
	}
	s.fail(eio)
	if s.recoverLog() {
		t.Fatal("reopened again at once")
	}
	clock = clock.Add(reopenBackoffMin)
	if !s.recoverLog() {
		t.Fatal("no reopen after the first pause")
	}
	s.fail(eio)
	clock = clock.Add(reopenBackoffMin)
	if s.recoverLog() {
		t.Fatal("the second pause did not grow")
	}
	clock = clock.Add(reopenBackoffMin)
	if !s.recoverLog() {
		t.Fatal("no reopen after the second pause")
	}
	if err := s.StoreLogs(entries(1, 1)); err != nil {
		t.Fatal(err)
	}
	if n := s.tries.Load(); n != 0 {
		t.Fatalf("a successful write left %d reopen attempts counted", n)
	}
}
