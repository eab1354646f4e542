package master

// A full disk under the raft log.
//
// The raft log is raft-wal (v0.4.0): segment files of a fixed size
// (gear.raft.segment-size), each preallocated in full when it is created,
// plus a small bolt file (wal-meta.db) with the segment list and raft's
// stable store. Because segments are preallocated, appends keep working on a
// full disk until the current segment is full. Then it breaks, one of two
// ways (both seen on a tmpfs, test/diskfull_test.go):
//   - The batch that seals a segment always runs past the segment's
//     preallocated end: raft-wal seals when the batch plus the index frame
//     would not fit, and then writes them anyway. On a completely full disk
//     that write fails with ENOSPC (the one 500 "no space left on device"),
//     but the writer had already marked itself sealed in memory: every later
//     append fails with "segment is sealed". Worse, the index frame may be on
//     disk without its commit frame, and raft-wal's recovery then marks the
//     tail sealed again, so not even a restart helps (scrubTail).
//   - If that write fits, raft-wal creates the next segment in a goroutine;
//     on a full disk that fails and raft-wal only logs "rotate error". The
//     sealed segment stays the tail, nothing retries the rotation, and a
//     retry in place could not work: the new segment was already committed to
//     wal-meta.db, and its half-created file left behind, while the
//     in-memory state kept the old next id.
//
// raft answers a failed append on the leader by failing the waiting writes
// and stepping down; a single master then wins its own election again, fails
// to append its no-op entry, steps down, and so on: every later write saw
// "no quorum".
//
// raft-wal recovers on open: Open reads the segment list from wal-meta.db,
// re-creates or re-opens the tail segment and drops frames that were never
// committed. So gear wraps the WAL in logStore, which remembers the first
// failed write, answers "disk full" (ErrDiskFull, naming the directory) while
// the log is broken, and, once the directory has room for a new segment
// again, cuts never-acknowledged frames off the tail, closes the WAL and
// opens it afresh under raft, which keeps running: raft only ever sees failed
// writes and then working ones. Raft's own view of the log (its last index)
// only advances on a successful append, so the reopened WAL agrees with it.
//
// Not handled: if wal-meta.db itself cannot grow while a segment is being
// rotated, the on-disk list keeps a properly sealed segment as the tail, and
// raft-wal's recovery keeps it sealed. bolt reuses freed pages, so this needs
// a disk filled at that exact moment; it was not seen in tests.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/logbridge"
)

// walMargin is the room a master needs in its data dir besides one log
// segment: wal-meta.db, raft snapshots of the (small) cluster state.
const walMargin = 1 << 20

// errLogReopening is what the log answers between a failed reopen and the
// next attempt.
var errLogReopening = errors.New("the raft log is closed while it is being reopened")

// logStore is raft's log and stable store: a raft-wal WAL that is reopened
// in place after a write failed (see the top of this file).
type logStore struct {
	dir     string // the WAL directory, <datadir>/raft/wal
	segSize int64
	log     *slog.Logger
	hlog    hclog.Logger
	// free reports the bytes available to this process under a path;
	// tests replace it.
	free func(path string) (uint64, error)

	mu   sync.RWMutex // held for reading by every call, for writing by reopen
	wal  *raftwal.WAL
	meta *metadb.BoltMetaDB // closed with the WAL (raft-wal's Close does not)

	pmu      sync.Mutex
	broken   error // first write failure not yet recovered from, nil when healthy
	brokenAt time.Time

	// Reopen attempts back off (250ms doubling to 10s) while the log keeps
	// breaking again (say, an I/O error rather than a full disk); a
	// successful write resets them. Only recoverLog uses nextTry.
	tries   atomic.Int32
	nextTry time.Time
	now     func() time.Time // time.Now; tests replace it
	// appendFault, when set, is asked before each append and fails it
	// as the disk would (tests of what a broken log does to elections).
	appendFault func() error
}

const (
	reopenBackoffMin = 250 * time.Millisecond
	reopenBackoffMax = 10 * time.Second
)

// freeBytes is the space an unprivileged writer can still use under path.
func freeBytes(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// spaceNeeded is the free space a master needs under its WAL directory:
// one full segment when the next write may have to create one (a new log,
// or an existing one being recovered), plus walMargin.
func spaceNeeded(segSize int64, newSegment bool) uint64 {
	if newSegment {
		return uint64(segSize) + walMargin
	}
	return walMargin
}

// bytesString renders n for people: "8.0 MiB".
func bytesString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// notEnoughSpace is the error for a start on a disk too small for the log.
func notEnoughSpace(dir string, free, need uint64, segSize int64) error {
	return fmt.Errorf("%w: not enough free space for the raft log in %s: %s free, %s needed (one %s log segment, preallocated in full, set by gear.raft.segment-size, plus %s for its index and snapshots): free space there, point -datadir at a larger disk, or lower gear.raft.segment-size",
		ErrDiskFull, dir, bytesString(free), bytesString(need), bytesString(uint64(segSize)), bytesString(walMargin))
}

// isNoSpace reports whether err means the disk or a quota is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		(err != nil && strings.Contains(err.Error(), "no space left on device"))
}

// openLogStore checks that dir has room for the log and opens it.
func openLogStore(dir string, segSize int64, log *slog.Logger) (*logStore, error) {
	s := &logStore{dir: dir, segSize: segSize, log: log, free: freeBytes}
	s.hlog = hclogFor(s)
	if err := s.checkSpace(); err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkSpace refuses a start that could not even create the log's first
// segment, before raft-wal fails with a bare "no space left on device".
func (s *logStore) checkSpace() error {
	free, err := s.free(s.dir)
	if err != nil {
		return err
	}
	segs, _ := filepath.Glob(filepath.Join(s.dir, "*.wal"))
	need := spaceNeeded(s.segSize, len(segs) == 0)
	if free < need {
		return notEnoughSpace(s.dir, free, need, s.segSize)
	}
	if full := spaceNeeded(s.segSize, true); free < full {
		s.log.Warn("the data dir has no room for the next raft log segment: writes will fail with 'disk full' once the current one is full",
			"dir", s.dir, "free", bytesString(free), "needed", bytesString(full))
	}
	return nil
}

// open opens the WAL; s.mu must be held for writing (or s not yet shared).
func (s *logStore) open() error {
	if err := scrubTail(s.dir, s.log); err != nil {
		return err
	}
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(s.dir, raftwal.WithSegmentSize(int(s.segSize)), raftwal.WithMetaStore(meta), raftwal.WithLogger(s.hlog))
	if err != nil {
		_ = meta.Close()
		switch {
		case isNoSpace(err):
			free, _ := s.free(s.dir)
			return fmt.Errorf("%w (%v)", notEnoughSpace(s.dir, free, spaceNeeded(s.segSize, true), s.segSize), err)
		case errors.Is(err, syscall.EWOULDBLOCK):
			return fmt.Errorf("open raft log in %s: %w (is another master using this data dir?)", s.dir, err)
		case isCorrupt(err):
			return corruptLogError(s.dir, 0, err)
		}
		return fmt.Errorf("open raft log in %s: %w", s.dir, err)
	}
	s.wal, s.meta = w, meta
	return nil
}

// Close closes the WAL and its meta store.
func (s *logStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *logStore) closeLocked() error {
	var err error
	if s.wal != nil {
		err = s.wal.Close()
		s.wal = nil
	}
	if s.meta != nil {
		err = errors.Join(err, s.meta.Close())
		s.meta = nil
	}
	return err
}

// fail records a write failure; the first one counts until a reopen.
func (s *logStore) fail(err error) {
	if err == nil {
		return
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.broken == nil {
		s.broken, s.brokenAt = err, time.Now()
		s.log.Error("the raft log failed to write; writes are refused until it is reopened, which the master does by itself once there is room",
			"dir", s.dir, "err", err)
	}
}

// problem says why writes fail while the log is broken, nil when it is
// healthy: ErrDiskFull when the disk is full (or has no room for the next
// segment), else ErrStorage.
func (s *logStore) problem() error {
	s.pmu.Lock()
	broken := s.broken
	s.pmu.Unlock()
	if broken == nil {
		return nil
	}
	need := spaceNeeded(s.segSize, true)
	free, ferr := s.free(s.dir)
	if isNoSpace(broken) || (ferr == nil && free < need) {
		return fmt.Errorf("%w: the master's data dir %s is full (no space left on device; %s free, %s needed for the next log segment): free space there; the master retries by itself",
			ErrDiskFull, s.dir, bytesString(free), bytesString(need))
	}
	return fmt.Errorf("%w: the master's raft log in %s failed to write (%v); the master reopens it by itself, retry in a moment", ErrStorage, s.dir, broken)
}

// recoverLog reopens a broken log once its directory has room for a new
// segment. It reports whether the log is healthy afterwards.
func (s *logStore) recoverLog() bool {
	s.pmu.Lock()
	broken := s.broken
	s.pmu.Unlock()
	if broken == nil {
		return true
	}
	free, err := s.free(s.dir)
	if err != nil || free < spaceNeeded(s.segSize, true) {
		return false
	}
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	if s.tries.Load() > 0 && now().Before(s.nextTry) {
		return false // still pausing; a successful write would have reset tries
	}
	n := s.tries.Add(1)
	s.nextTry = now().Add(min(reopenBackoffMin<<min(n-1, 6), reopenBackoffMax))
	s.mu.Lock()
	defer s.mu.Unlock()
	var last uint64
	if s.wal != nil {
		last, _ = s.wal.LastIndex()
	}
	_ = s.closeLocked()
	if err := s.open(); err != nil {
		s.log.Error("could not reopen the raft log; trying again", "dir", s.dir, "err", err)
		return false
	}
	after, _ := s.wal.LastIndex()
	s.pmu.Lock()
	s.log.Warn("reopened the raft log after a write failure; writes work again", "dir", s.dir,
		"failed_for", time.Since(s.brokenAt).Round(time.Millisecond), "last_index", after, "last_index_before", last, "attempt", n)
	s.broken = nil
	s.pmu.Unlock()
	return true
}

// watch reopens the log after a failure as soon as there is room, until ctx
// ends.
func (s *logStore) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.recoverLog()
		}
	}
}

// read runs f on the open WAL.
func (s *logStore) read(f func(w *raftwal.WAL) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.wal == nil {
		return errLogReopening
	}
	return f(s.wal)
}

// write runs f on the open WAL and records a failure.
func (s *logStore) write(f func(w *raftwal.WAL) error) error {
	err := s.read(f)
	if err != nil {
		s.fail(err)
	} else if s.tries.Load() != 0 {
		s.tries.Store(0)
	}
	return err
}

// FirstIndex implements raft.LogStore.
func (s *logStore) FirstIndex() (i uint64, err error) {
	err = s.read(func(w *raftwal.WAL) error { i, err = w.FirstIndex(); return err })
	return i, err
}

// LastIndex implements raft.LogStore.
func (s *logStore) LastIndex() (i uint64, err error) {
	err = s.read(func(w *raftwal.WAL) error { i, err = w.LastIndex(); return err })
	return i, err
}

// GetLog implements raft.LogStore.
func (s *logStore) GetLog(index uint64, l *raft.Log) error {
	return s.read(func(w *raftwal.WAL) error { return w.GetLog(index, l) })
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	return s.write(func(w *raftwal.WAL) error {
		if s.appendFault != nil {
			if err := s.appendFault(); err != nil {
				return err
			}
		}
		return w.StoreLogs(logs)
	})
}

// DeleteRange implements raft.LogStore.
func (s *logStore) DeleteRange(lo, hi uint64) error {
	return s.write(func(w *raftwal.WAL) error { return w.DeleteRange(lo, hi) })
}

// IsMonotonic implements raft.MonotonicLogStore, as the WAL does.
func (s *logStore) IsMonotonic() bool { return true }

// Set implements raft.StableStore.
func (s *logStore) Set(k, v []byte) error {
	return s.write(func(w *raftwal.WAL) error { return w.Set(k, v) })
}

// Get implements raft.StableStore.
func (s *logStore) Get(k []byte) (v []byte, err error) {
	err = s.read(func(w *raftwal.WAL) error { v, err = w.Get(k); return err })
	return v, err
}

// SetUint64 implements raft.StableStore.
func (s *logStore) SetUint64(k []byte, v uint64) error {
	return s.write(func(w *raftwal.WAL) error { return w.SetUint64(k, v) })
}

// GetUint64 implements raft.StableStore.
func (s *logStore) GetUint64(k []byte) (v uint64, err error) {
	err = s.read(func(w *raftwal.WAL) error { v, err = w.GetUint64(k); return err })
	return v, err
}

var (
	_ raft.LogStore          = (*logStore)(nil)
	_ raft.StableStore       = (*logStore)(nil)
	_ raft.MonotonicLogStore = (*logStore)(nil)
)

// hclogFor is raft-wal's logger for s. raft-wal logs a failed rotation and
// carries on with a sealed segment; the logger catches that line so the log
// counts as broken before the next write.
func hclogFor(s *logStore) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft-wal", Level: hclog.Warn, Output: &walLogWriter{s: s, next: &logbridge.Writer{Log: s.log, From: "raft-wal"}}})
}

// walLogWriter passes raft-wal's log lines on and marks the log broken on
// a failed segment rotation, which raft-wal only logs.
type walLogWriter struct {
	s    *logStore
	next io.Writer
}

func (w *walLogWriter) Write(b []byte) (int, error) {
	if line := string(b); strings.Contains(line, "rotate error") {
		err := errors.New(strings.TrimSpace(line))
		if strings.Contains(line, "no space left on device") {
			err = fmt.Errorf("%w: %v", syscall.ENOSPC, err)
		}
		w.s.fail(fmt.Errorf("could not start a new log segment: %w", err))
	}
	return w.next.Write(b)
}

// scrubTail cuts what follows the last commit frame off the newest segment
// file in dir, the log's tail. Those frames were never acknowledged (an
// append returns only after its commit frame is synced), and raft-wal's
// recovery mishandles one kind of them: when the batch that sealed a
// segment failed to write (its last bytes ran past the preallocated file
// on a full disk), the index frame may be on disk without its commit
// frame, and recovery then marks the tail as sealed although nothing will
// ever rotate it: every append fails with "segment is sealed", also after
// a restart. Truncating needs no free space.
func scrubTail(dir string, log *slog.Logger) error {
	path, ok, err := tailSegment(dir)
	if err != nil || !ok {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open raft log segment: %w", err)
	}
	defer f.Close()
	end, stop, err := lastCommitEnd(f)
	if err != nil {
		return fmt.Errorf("read raft log segment %s: %w", path, err)
	}
	if stop <= max(end, walFileHeaderLen) {
		return nil // nothing after the last commit (or a fresh, empty file)
	}
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("cut the unacknowledged tail off raft log segment %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync raft log segment %s: %w", path, err)
	}
	log.Warn("cut unacknowledged frames (from a failed write) off the raft log's tail", "segment", path, "at", end, "bytes", stop-end)
	return nil
}

// tailSegment returns the segment file with the highest id in dir.
func tailSegment(dir string) (string, bool, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		return "", false, err
	}
	var best string
	var bestID uint64
	for _, n := range names {
		var base, id uint64
		if _, err := fmt.Sscanf(filepath.Base(n), "%020d-%016x.wal", &base, &id); err != nil {
			continue // raft-wal reports misnamed files itself
		}
		if best == "" || id > bestID {
			best, bestID = n, id
		}
	}
	return best, best != "", nil
}

// Segment file format of raft-wal v0.4.0 (segment/format.go): a 32-byte
// file header, then frames of an 8-byte header (type, 3 reserved bytes,
// little-endian length, or CRC for a commit frame) and a payload padded to
// 8 bytes. A zero header ends the frames.
const (
	walFileHeaderLen  = 32
	walFrameHeaderLen = 8
	walFrameEntry     = 1
	walFrameIndex     = 2
	walFrameCommit    = 3
)

// lastCommitEnd walks a segment's frames. end is the offset just past the
// last commit frame (0 when there is none: nothing in the file counts);
// stop is where the frames end.
func lastCommitEnd(f io.ReaderAt) (end, stop int64, err error) {
	var h [walFrameHeaderLen]byte
	off := int64(walFileHeaderLen)
	for {
		n, err := f.ReadAt(h[:], off)
		if n < len(h) {
			if err == io.EOF || err == nil {
				return end, off, nil
			}
			return 0, 0, err
		}
		size := int64(walFrameHeaderLen)
		switch h[0] {
		case walFrameEntry, walFrameIndex:
			l := int64(binary.LittleEndian.Uint32(h[4:8]))
			size += l + (walFrameHeaderLen-l%walFrameHeaderLen)%walFrameHeaderLen
		case walFrameCommit:
			end = off + walFrameHeaderLen
		default: // zeros (the end) or a torn header
			return end, off, nil
		}
		off += size
	}
}
