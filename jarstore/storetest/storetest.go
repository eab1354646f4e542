// Package storetest is the conformance suite every jarstore.Store backend
// must pass. It is test-only support code: call Run from a _test.go file with
// a function that returns a fresh, empty store.
//
//	func TestMyBackend(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) jarstore.Store { return openMine(t) })
//	}
//
// It is not a benchmark and does not test content addressing (Blobs is
// tested in package jarstore on top of these backends).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
)

// Options tunes the suite for slow backends.
type Options struct {
	// LargeSize is the size of the multi-MiB round trip (default 5 MiB + 17).
	LargeSize int
	// Concurrency is the number of concurrent Puts of one name (default 8).
	Concurrency int
}

// Run runs the whole suite; newStore must return a new empty store for each
// subtest (and may register its own cleanup; Run closes the store too).
func Run(t *testing.T, newStore func(t *testing.T) jarstore.Store) {
	RunWith(t, Options{}, newStore)
}

// RunWith is Run with options.
func RunWith(t *testing.T, o Options, newStore func(t *testing.T) jarstore.Store) {
	if o.LargeSize <= 0 {
		o.LargeSize = 5<<20 + 17
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	open := func(t *testing.T) jarstore.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s jarstore.Store, o Options)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"StatListDelete", testStatListDelete},
		{"NotFound", testNotFound},
		{"InvalidNames", testInvalidNames},
		{"Rename", testRename},
		{"ConcurrentPutSameName", testConcurrentPut},
		{"FailedPutLeavesNothing", testFailedPut},
		{"ContextCancel", testContextCancel},
		{"Closed", testClosed},
		{"TempSweep", testTempSweep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t), o) })
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s jarstore.Store, name string, data []byte) {
	t.Helper()
	n, err := s.Put(context.Background(), name, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", name, len(data), err)
	}
	if n != int64(len(data)) {
		t.Fatalf("Put(%q) = %d bytes, want %d", name, n, len(data))
	}
}

func get(t *testing.T, s jarstore.Store, name string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", name, err)
	}
	return b
}

func names(t *testing.T, s jarstore.Store) []string {
	t.Helper()
	infos, err := s.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := make([]string, 0, len(infos))
	for _, in := range infos {
		out = append(out, in.Name)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testRoundTrip(t *testing.T, s jarstore.Store, o Options) {
	cases := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one-byte", 1},
		{"small.jar", 1000},
		{"odd-size_64KiB-1", 64<<10 - 1},
		{"large.tar.gz", o.LargeSize},
	}
	for i, c := range cases {
		data := randomBytes(uint64(i+1), c.size)
		put(t, s, c.name, data)
		if got := get(t, s, c.name); !bytes.Equal(got, data) {
			t.Errorf("%s: Get returned %d bytes differing from the %d put", c.name, len(got), len(data))
		}
		info, err := s.Stat(context.Background(), c.name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", c.name, err)
		}
		if info.Name != c.name || info.Size != int64(c.size) {
			t.Errorf("Stat(%q) = %+v, want name %q size %d", c.name, info, c.name, c.size)
		}
		if info.ModTime.IsZero() {
			t.Errorf("Stat(%q).ModTime is zero", c.name)
		}
	}
}

func testOverwrite(t *testing.T, s jarstore.Store, _ Options) {
	old := randomBytes(10, 3000)
	newer := randomBytes(11, 1200)
	put(t, s, "app", old)
	put(t, s, "app", newer)
	if got := get(t, s, "app"); !bytes.Equal(got, newer) {
		t.Fatalf("after overwrite Get returned %d bytes, want the newer %d", len(got), len(newer))
	}
	info, err := s.Stat(context.Background(), "app")
	if err != nil || info.Size != int64(len(newer)) {
		t.Fatalf("Stat after overwrite = %+v, %v; want size %d", info, err, len(newer))
	}
	if got := names(t, s); !equalStrings(got, []string{"app"}) {
		t.Fatalf("List after overwrite = %v, want [app]", got)
	}
}

func testStatListDelete(t *testing.T, s jarstore.Store, _ Options) {
	ctx := context.Background()
	if got := names(t, s); len(got) != 0 {
		t.Fatalf("List of a new store = %v, want empty", got)
	}
	want := []string{"a", "b.jar", "c-1.0_final.zip"}
	for i, n := range []string{"c-1.0_final.zip", "a", "b.jar"} {
		put(t, s, n, randomBytes(uint64(20+i), 100*(i+1)))
	}
	if got := names(t, s); !equalStrings(got, want) {
		t.Fatalf("List = %v, want %v (sorted)", got, want)
	}
	infos, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		st, err := s.Stat(ctx, in.Name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", in.Name, err)
		}
		if st.Size != in.Size {
			t.Errorf("List size of %q = %d, Stat says %d", in.Name, in.Size, st.Size)
		}
	}
	if err := s.Delete(ctx, "b.jar"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := names(t, s); !equalStrings(got, []string{"a", "c-1.0_final.zip"}) {
		t.Fatalf("List after Delete = %v", got)
	}
	if _, err := s.Stat(ctx, "b.jar"); !errors.Is(err, jarstore.ErrNotFound) {
		t.Fatalf("Stat of deleted = %v, want ErrNotFound", err)
	}
}

func testNotFound(t *testing.T, s jarstore.Store, _ Options) {
	ctx := context.Background()
	put(t, s, "present", []byte("x"))
	checks := []struct {
		op string
		fn func() error
	}{
		{"Get", func() error {
			rc, err := s.Get(ctx, "missing")
			if rc != nil {
				rc.Close()
			}
			return err
		}},
		{"Stat", func() error { _, err := s.Stat(ctx, "missing"); return err }},
		{"Delete", func() error { return s.Delete(ctx, "missing") }},
		{"Rename", func() error { return s.Rename(ctx, "missing", "other") }},
	}
	for _, c := range checks {
		err := c.fn()
		if !errors.Is(err, jarstore.ErrNotFound) {
			t.Errorf("%s(missing) = %v, want ErrNotFound", c.op, err)
		} else if msg := err.Error(); !strings.Contains(msg, "missing") {
			t.Errorf("%s(missing) error %q does not name the object", c.op, msg)
		}
	}
	if got := names(t, s); !equalStrings(got, []string{"present"}) {
		t.Errorf("List = %v, want [present]", got)
	}
}

func testInvalidNames(t *testing.T, s jarstore.Store, _ Options) {
	ctx := context.Background()
	for _, n := range []string{"", ".hidden", "../escape", "a/b", "sha256:abc", "sp ace", strings.Repeat("a", 256)} {
		if _, err := s.Put(ctx, n, bytes.NewReader([]byte("x"))); !errors.Is(err, jarstore.ErrInvalidName) {
			t.Errorf("Put(%q) = %v, want ErrInvalidName", n, err)
		}
		if _, err := s.Stat(ctx, n); !errors.Is(err, jarstore.ErrInvalidName) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidName", n, err)
		}
	}
	if got := names(t, s); len(got) != 0 {
		t.Errorf("List after invalid puts = %v, want empty", got)
	}
}

func testRename(t *testing.T, s jarstore.Store, _ Options) {
	ctx := context.Background()
	a, b := randomBytes(30, 500), randomBytes(31, 700)
	put(t, s, "from", a)
	put(t, s, "to", b)
	if err := s.Rename(ctx, "from", "to"); err != nil {
		t.Fatalf("Rename over an existing object: %v", err)
	}
	if got := get(t, s, "to"); !bytes.Equal(got, a) {
		t.Fatalf("after Rename, target has %d bytes, want the source's %d", len(got), len(a))
	}
	if got := names(t, s); !equalStrings(got, []string{"to"}) {
		t.Fatalf("List after Rename = %v, want [to]", got)
	}
	if err := s.Rename(ctx, "to", "fresh"); err != nil {
		t.Fatalf("Rename to a new name: %v", err)
	}
	if got := names(t, s); !equalStrings(got, []string{"fresh"}) {
		t.Fatalf("List after second Rename = %v, want [fresh]", got)
	}
}

func testConcurrentPut(t *testing.T, s jarstore.Store, o Options) {
	const size = 300 << 10
	contents := make([][]byte, o.Concurrency)
	for i := range contents {
		contents[i] = randomBytes(uint64(100+i), size)
	}
	var wg sync.WaitGroup
	errs := make([]error, o.Concurrency)
	for i := range contents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Put(context.Background(), "same", bytes.NewReader(contents[i]))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Put %d: %v", i, err)
		}
	}
	got := get(t, s, "same")
	found := false
	for _, c := range contents {
		if bytes.Equal(got, c) {
			found = true
		}
	}
	if !found {
		t.Fatalf("after %d concurrent Puts the object (%d bytes) equals none of them: writes were mixed", o.Concurrency, len(got))
	}
	if n := names(t, s); !equalStrings(n, []string{"same"}) {
		t.Fatalf("List after concurrent Puts = %v, want [same] (temporary files must not be listed)", n)
	}
}

// failingReader returns n bytes of data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testFailedPut(t *testing.T, s jarstore.Store, _ Options) {
	boom := errors.New("client went away")
	old := randomBytes(40, 2000)
	put(t, s, "existing", old)
	for _, name := range []string{"existing", "brand-new"} {
		_, err := s.Put(context.Background(), name, &failingReader{data: randomBytes(41, 1<<20), err: boom})
		if !errors.Is(err, boom) {
			t.Fatalf("Put(%q) with a failing reader = %v, want it to wrap the reader's error", name, err)
		}
	}
	if got := names(t, s); !equalStrings(got, []string{"existing"}) {
		t.Fatalf("List after failed Puts = %v, want [existing] (nothing half-written visible)", got)
	}
	if got := get(t, s, "existing"); !bytes.Equal(got, old) {
		t.Fatalf("a failed overwrite changed the existing object")
	}
	if _, err := s.Stat(context.Background(), "brand-new"); !errors.Is(err, jarstore.ErrNotFound) {
		t.Fatalf("Stat(brand-new) after failed Put = %v, want ErrNotFound", err)
	}
}

// cancelReader cancels ctx after n bytes and keeps returning data.
type cancelReader struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	if len(p) > 4096 {
		p = p[:4096]
	}
	c.n -= len(p)
	return len(p), nil
}

func testContextCancel(t *testing.T, s jarstore.Store, _ Options) {
	put(t, s, "kept", []byte("kept"))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "pre-cancelled", bytes.NewReader([]byte("x"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled ctx = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "kept"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled ctx = %v, want context.Canceled", err)
	}

	// Cancel mid-stream: the reader never ends by itself, so only the
	// cancellation can stop Put. Bounded by a deadline so a broken backend
	// fails the test instead of hanging it.
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := s.Put(ctx, "mid-cancelled", &cancelReader{n: 256 << 10, cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put cancelled mid-stream = %v, want context.Canceled", err)
	}

	// A reader opened before cancellation stops with ctx's error.
	ctx, cancel = context.WithCancel(context.Background())
	big := randomBytes(50, 512<<10)
	put(t, s, "big", big)
	rc, err := s.Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Errorf("reading after cancel = %v, want context.Canceled", err)
	}
	rc.Close()

	if got := names(t, s); !equalStrings(got, []string{"big", "kept"}) {
		t.Errorf("List after cancelled Puts = %v, want [big kept]", got)
	}
}

func testClosed(t *testing.T, s jarstore.Store, _ Options) {
	put(t, s, "x", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Put(context.Background(), "y", bytes.NewReader(nil)); !errors.Is(err, jarstore.ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	if _, err := s.List(context.Background()); !errors.Is(err, jarstore.ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
}

// crash is what crashingReader panics with.
type crash struct{}

// crashingReader returns data, then panics: a Put that never returns, like
// one in a master killed mid-upload (its deferred cleanup sees no error).
type crashingReader struct{ data []byte }

func (c *crashingReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		panic(crash{})
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// testTempSweep: the temporary file of an interrupted Put is removed by
// SweepTemps; one of a Put in progress never is, whatever the cutoff.
// Backends without temporary objects (mem://) do not implement TempSweeper.
func testTempSweep(t *testing.T, s jarstore.Store, _ Options) {
	ts, ok := s.(jarstore.TempSweeper)
	if !ok {
		t.Logf("%T writes no temporary objects", s)
		return
	}
	ctx := context.Background()
	put(t, s, "kept", []byte("kept"))
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(crash); !ok {
					panic(r)
				}
			}
		}()
		_, _ = s.Put(ctx, "crashed", &crashingReader{data: randomBytes(60, 100<<10)})
		t.Fatal("Put returned from a crashing reader")
	}()

	// A Put in progress: the suite holds its reader open.
	pr, pw := io.Pipe()
	live := randomBytes(61, 300<<10)
	done := make(chan error, 1)
	go func() { _, err := s.Put(ctx, "live", pr); done <- err }()
	if _, err := pw.Write(live[:100<<10]); err != nil { // the Put has begun: its temporary file exists
		t.Fatal(err)
	}

	removed, err := ts.SweepTemps(ctx, time.Now().Add(time.Hour)) // every temporary file is old enough
	if err != nil {
		t.Fatalf("SweepTemps: %v", err)
	}
	if len(removed) != 1 {
		t.Fatalf("SweepTemps removed %v, want exactly the interrupted Put's temporary file", removed)
	}
	if _, err := pw.Write(live[100<<10:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("the Put in progress during SweepTemps failed: %v", err)
	}
	if got := get(t, s, "live"); !bytes.Equal(got, live) {
		t.Fatal("the Put in progress during SweepTemps stored different content")
	}
	if removed, err := ts.SweepTemps(ctx, time.Now().Add(time.Hour)); err != nil || len(removed) != 0 {
		t.Fatalf("second SweepTemps = %v, %v; want nothing left to remove", removed, err)
	}
	if got := names(t, s); !equalStrings(got, []string{"kept", "live"}) {
		t.Fatalf("List after SweepTemps = %v, want [kept live]", got)
	}
	// A recent leftover stays when the cutoff is before it.
	if removed, err := ts.SweepTemps(ctx, time.Now().Add(-time.Hour)); err != nil || len(removed) != 0 {
		t.Fatalf("SweepTemps(an hour ago) = %v, %v; want nothing", removed, err)
	}
}
