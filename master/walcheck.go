package master

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// A master must never panic on its own log. raft-wal repairs a torn tail
// by itself when it opens the log: entries after the last complete commit
// were never acknowledged, and it drops them. What it cannot repair is an
// entry that is on disk but does not read back (over its 64 MiB
// MaxEntrySize, or damaged), and raft.NewRaft panics when it meets one.
// So the log is read back in full before raft starts, and a bad entry
// stops the master with the way to recover. Entries cannot simply be
// truncated there: a committed entry, which other masters may count on
// this one to hold, must not be dropped silently.

// checkLog reads back every entry of the log.
func checkLog(logs raft.LogStore, dir string) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return corruptLogError(dir, 0, fmt.Errorf("first index: %w", err))
	}
	last, err := logs.LastIndex()
	if err != nil {
		return corruptLogError(dir, 0, fmt.Errorf("last index: %w", err))
	}
	if last == 0 {
		return nil
	}
	for i := max(first, 1); i <= last; i++ {
		if err := readEntry(logs, i); err != nil {
			return corruptLogError(dir, i-1, fmt.Errorf("entry %d (of %d..%d): %w", i, first, last, err))
		}
	}
	return nil
}

func readEntry(logs raft.LogStore, i uint64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading it panicked: %v", raftwal.ErrCorrupt, p)
		}
	}()
	var l raft.Log
	if err := logs.GetLog(i, &l); err != nil {
		return err
	}
	if l.Index != i {
		return fmt.Errorf("%w: it reads back as entry %d", raftwal.ErrCorrupt, l.Index)
	}
	return nil
}

// corruptLogError says what is wrong with the log in dir and how to
// recover; after is the last good index (0: unknown or none).
func corruptLogError(dir string, after uint64, err error) error {
	where := ""
	if after > 0 {
		where = fmt.Sprintf(" after index %d", after)
	}
	return fmt.Errorf("the raft log in %s is corrupt%s: %w; to recover, stop this master, move %s away (e.g. mv %s %s.corrupt) and start it again: "+
		"it will catch up from the other masters (state is replicated); with a single master, what was written since the last snapshot is lost",
		dir, where, err, dir, dir, dir)
}

// newRaft is raft.NewRaft that returns an error instead of panicking on
// an unreadable log (the last resort: checkLog should have found it).
func newRaft(dir string, conf *raft.Config, f raft.FSM, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, corruptLogError(dir, 0, fmt.Errorf("%w: raft panicked reading it: %v", raftwal.ErrCorrupt, p))
		}
	}()
	return raft.NewRaft(conf, f, logs, stable, snaps, trans)
}

// isCorrupt reports whether err says the log is damaged.
func isCorrupt(err error) bool { return errors.Is(err, raftwal.ErrCorrupt) }
