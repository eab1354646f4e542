package hdfsd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// replica is one stored block on the datanode.
type replica struct {
	mu        sync.Mutex
	gen       uint64
	data      []byte   // in-memory store
	file      *os.File // directory store
	size      int64
	finalized bool
}

// writeAt stores p at off, growing the replica as needed.
func (r *replica) writeAt(p []byte, off int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := off + int64(len(p))
	if r.file != nil {
		if _, err := r.file.WriteAt(p, off); err != nil {
			return fmt.Errorf("write block file: %w", err)
		}
	} else {
		switch {
		case end <= int64(len(r.data)):
		case end <= int64(cap(r.data)):
			old := len(r.data)
			r.data = r.data[:end]
			clear(r.data[old:]) // no stale bytes from before a truncate
		default:
			grown := make([]byte, end, max(end, 2*int64(cap(r.data))))
			copy(grown, r.data)
			r.data = grown
		}
		copy(r.data[off:end], p)
	}
	if end > r.size {
		r.size = end
	}
	return nil
}

// readAt reads stored bytes; it never reads past the replica's size.
func (r *replica) readAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off >= r.size {
		return 0, io.EOF
	}
	if int64(len(p)) > r.size-off {
		p = p[:r.size-off]
	}
	if r.file != nil {
		return r.file.ReadAt(p, off)
	}
	return copy(p, r.data[off:]), nil
}

// truncate drops bytes past size, as a writer that restarts a block at an
// offset (append) needs.
func (r *replica) truncate(size int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if size >= r.size {
		return nil
	}
	if r.file != nil {
		if err := r.file.Truncate(size); err != nil {
			return fmt.Errorf("truncate block file: %w", err)
		}
	} else {
		r.data = r.data[:size]
	}
	r.size = size
	return nil
}

func (r *replica) state() (size int64, gen uint64, finalized bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size, r.gen, r.finalized
}

func (r *replica) finalize(gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finalized = true
	r.gen = gen
}

// blockStore holds the datanode's replicas, in memory or as files in dir.
type blockStore struct {
	dir string // "" = memory

	mu       sync.Mutex
	replicas map[uint64]*replica
}

func newBlockStore(dir string) (*blockStore, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("hdfsd: create block dir (set Options.Dir to a writable directory): %w", err)
		}
	}
	return &blockStore{dir: dir, replicas: map[uint64]*replica{}}, nil
}

// open returns the replica to write block id into, creating it if needed.
func (s *blockStore) open(id, gen uint64) (*replica, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.replicas[id]; ok {
		r.mu.Lock()
		r.finalized = false
		r.gen = gen
		r.mu.Unlock()
		return r, nil
	}
	r := &replica{gen: gen}
	if s.dir != "" {
		f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("blk_%d", id)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create block file: %w", err)
		}
		r.file = f
	}
	s.replicas[id] = r
	return r, nil
}

func (s *blockStore) get(id uint64) *replica {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicas[id]
}

func (s *blockStore) remove(ids []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		r, ok := s.replicas[id]
		if !ok {
			continue
		}
		delete(s.replicas, id)
		if r.file != nil {
			r.mu.Lock()
			r.file.Close()
			os.Remove(r.file.Name())
			r.mu.Unlock()
		}
	}
}

func (s *blockStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.replicas {
		if r.file != nil {
			r.file.Close()
		}
	}
}

// stats reports how many replicas exist and their total size.
func (s *blockStore) stats() (count int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.replicas {
		size, _, _ := r.state()
		count++
		bytes += size
	}
	return count, bytes
}
