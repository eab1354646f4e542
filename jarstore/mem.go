package jarstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"sync"
	"time"
)

// memStore keeps objects in memory. It exists for unit tests of code built on
// Store (and passes the same conformance suite as the real backends); it is
// never a production jar store: everything is lost with the process.
type memStore struct {
	mu     sync.Mutex
	objs   map[string]memObj
	closed bool
	now    func() time.Time
}

type memObj struct {
	data []byte // never modified after Put
	mod  time.Time
}

func openMem(_ context.Context, u *url.URL, raw string, _ *slog.Logger) (Store, error) {
	if u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("jarstore: root path %q: mem:// takes no host or path (each Open is a new empty store)", raw)
	}
	return NewMem(time.Now), nil
}

// NewMem returns an empty in-memory Store whose ModTimes come from now
// (tests pass a fake clock to exercise Blobs.GC's grace period).
func NewMem(now func() time.Time) Store {
	if now == nil {
		now = time.Now
	}
	return &memStore{objs: map[string]memObj{}, now: now}
}

func (m *memStore) check(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return err
		}
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return ctx.Err()
}

func (m *memStore) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	if err := m.check(ctx, name); err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	n, err := io.CopyBuffer(&buf, &ctxReader{ctx, r}, make([]byte, 32<<10))
	if err != nil {
		return n, fmt.Errorf("jarstore: put %q: reading the upload: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return n, ErrClosed
	}
	m.objs[name] = memObj{data: buf.Bytes(), mod: m.now()}
	return n, nil
}

func (m *memStore) get(name string) (memObj, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[name]
	if !ok {
		return memObj{}, fmt.Errorf("%w: %q in mem://", ErrNotFound, name)
	}
	return o, nil
}

func (m *memStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := m.check(ctx, name); err != nil {
		return nil, err
	}
	o, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return withContext(ctx, io.NopCloser(bytes.NewReader(o.data))), nil
}

func (m *memStore) Stat(ctx context.Context, name string) (Info, error) {
	if err := m.check(ctx, name); err != nil {
		return Info{}, err
	}
	o, err := m.get(name)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: name, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

func (m *memStore) List(ctx context.Context) ([]Info, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	out := make([]Info, 0, len(m.objs))
	for n, o := range m.objs {
		out = append(out, Info{Name: n, Size: int64(len(o.data)), ModTime: o.mod})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memStore) Rename(ctx context.Context, from, to string) error {
	if err := m.check(ctx, from, to); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[from]
	if !ok {
		return fmt.Errorf("%w: %q in mem://", ErrNotFound, from)
	}
	delete(m.objs, from)
	m.objs[to] = o
	return nil
}

func (m *memStore) Delete(ctx context.Context, name string) error {
	if err := m.check(ctx, name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[name]; !ok {
		return fmt.Errorf("%w: %q in mem://", ErrNotFound, name)
	}
	delete(m.objs, name)
	return nil
}

func (m *memStore) Close() error {
	m.mu.Lock()
	m.closed = true
	m.objs = map[string]memObj{}
	m.mu.Unlock()
	return nil
}

func (m *memStore) String() string { return "mem://" }
