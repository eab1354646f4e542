package hdfsd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	hdfs "github.com/colinmarc/hdfs/v2"
	"github.com/colinmarc/hdfs/v2/hadoopconf"
)

// recordingHandler keeps every log record so tests can assert on Error logs.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		if r.Level >= slog.LevelError {
			msg := r.Message
			r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
			out = append(out, msg)
		}
	}
	return out
}

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newClient(t *testing.T, addrs ...string) *hdfs.Client {
	t.Helper()
	cl, err := hdfs.NewClient(hdfs.ClientOptions{Addresses: addrs, User: "gear"})
	if err != nil {
		t.Fatalf("hdfs.NewClient(%v): %v", addrs, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeFile(t *testing.T, cl *hdfs.Client, name string, blockSize int64, data []byte) {
	t.Helper()
	if err := cl.MkdirAll(path.Dir(name), 0o755); err != nil {
		t.Fatalf("MkdirAll(%s): %v", path.Dir(name), err)
	}
	var w *hdfs.FileWriter
	var err error
	if blockSize > 0 {
		w, err = cl.CreateFile(name, 1, blockSize, 0o644)
	} else {
		w, err = cl.Create(name)
	}
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	// Write in uneven pieces so writes straddle packet and block boundaries.
	for off, step := 0, 1; off < len(data); step = step*3 + 7 {
		end := min(off+step, len(data))
		if _, err := w.Write(data[off:end]); err != nil {
			t.Fatalf("write %s at %d: %v", name, off, err)
		}
		off = end
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		blockSize int64 // 0: the cluster default via Create
		size      int
	}{
		{"empty", Options{}, 0, 0},
		{"one byte", Options{}, 0, 1},
		{"tiny blocks, exact multiple", Options{}, 1024, 8 * 1024},
		{"tiny blocks, ragged", Options{}, 1024, 5*1024 + 17},
		{"block size not chunk aligned", Options{}, 1000, 4321},
		{"default block size 64KiB", Options{BlockSize: 64 << 10}, 0, 300_000},
		{"1MiB blocks", Options{BlockSize: 1 << 20}, 0, 3<<20 + 12345},
		{"blocks on disk", Options{Dir: "tempdir"}, 128 << 10, 700_000},
		{"crc32 reads, 4KiB chunks", Options{ReadChecksumCRC32: true, BytesPerChecksum: 4096}, 100 << 10, 333_333},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Dir != "" {
				tt.opts.Dir = t.TempDir()
			}
			c := startCluster(t, tt.opts)
			cl := newClient(t, c.NameNodeAddr())
			data := randomBytes(uint64(i+1), tt.size)
			writeFile(t, cl, "/f", tt.blockSize, data)

			got, err := cl.ReadFile("/f")
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes differ from the %d written", len(got), len(data))
			}
			fi, err := cl.Stat("/f")
			if err != nil || fi.Size() != int64(tt.size) || fi.IsDir() {
				t.Fatalf("Stat = %v, %v; want a %d byte file", fi, err, tt.size)
			}
			bs := tt.blockSize
			if bs == 0 {
				bs = c.BlockSize()
			}
			wantBlocks := int((int64(tt.size) + bs - 1) / bs)
			if n, _ := c.StoredBlocks(); n != wantBlocks {
				t.Errorf("datanode holds %d blocks, want %d", n, wantBlocks)
			}
			if tt.opts.Dir != "" {
				ents, _ := os.ReadDir(tt.opts.Dir)
				if len(ents) != wantBlocks {
					t.Errorf("block dir holds %d files, want %d", len(ents), wantBlocks)
				}
			}

			// Random-access reads across block boundaries.
			f, err := cl.Open("/f")
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(7, uint64(i)))
			for range 20 {
				if tt.size == 0 {
					break
				}
				off := r.IntN(tt.size)
				n := min(r.IntN(min(3*int(bs), 200_000))+1, tt.size-off)
				buf := make([]byte, n)
				if _, err := f.ReadAt(buf, int64(off)); err != nil && !errors.Is(err, io.EOF) {
					t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
				}
				if !bytes.Equal(buf, data[off:off+n]) {
					t.Fatalf("ReadAt(%d, %d) returned wrong bytes", off, n)
				}
			}
		})
	}
}

func TestNamespaceOperations(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := startCluster(t, Options{ListLimit: 3, Now: func() time.Time { return clock }})
	cl := newClient(t, c.NameNodeAddr())

	if err := cl.MkdirAll("/a/b/c", 0o750); err != nil {
		t.Fatalf("MkdirAll: %v", err)
	}
	if err := cl.MkdirAll("/a/b/c", 0o750); err != nil {
		t.Fatalf("MkdirAll of an existing dir: %v", err)
	}
	if err := cl.Mkdir("/a/d", 0o700); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	fi, err := cl.Stat("/a/b/c")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(clock) {
		t.Fatalf("Stat(/a/b/c) = %v %v %v, %v; want dir 0750 at %v", fi.IsDir(), fi.Mode(), fi.ModTime(), err, clock)
	}
	if got := fi.(*hdfs.FileInfo).Owner(); got != "gear" {
		t.Errorf("owner = %q, want the client user gear", got)
	}

	// Listing with paging (ListLimit 3, 10 entries) in byte order.
	var want []string
	for i := range 10 {
		name := fmt.Sprintf("f%02d", 9-i)
		writeFile(t, cl, "/list/"+name, 0, []byte(name))
		want = append(want, name)
	}
	slices.Sort(want)
	infos, err := cl.ReadDir("/list")
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	var got []string
	for _, fi := range infos {
		got = append(got, fi.Name())
		if fi.Size() != 3 || fi.IsDir() {
			t.Errorf("%s: size %d dir %v, want a 3 byte file", fi.Name(), fi.Size(), fi.IsDir())
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ReadDir = %v, want %v", got, want)
	}

	// Rename a file, overwrite an existing file, move a directory.
	if err := cl.Rename("/list/f00", "/a/moved"); err != nil {
		t.Fatalf("Rename file: %v", err)
	}
	if err := cl.Rename("/list/f01", "/a/moved"); err != nil {
		t.Fatalf("Rename over an existing file: %v", err)
	}
	if b, err := cl.ReadFile("/a/moved"); err != nil || string(b) != "f01" {
		t.Fatalf("ReadFile(/a/moved) = %q, %v; want f01", b, err)
	}
	if err := cl.Rename("/a/b", "/a/d/b2"); err != nil {
		t.Fatalf("Rename dir: %v", err)
	}
	if fi, err := cl.Stat("/a/d/b2/c"); err != nil || !fi.IsDir() {
		t.Fatalf("Stat after dir rename: %v, %v", fi, err)
	}
	if _, err := cl.Stat("/a/b"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old dir still there: %v", err)
	}

	// Delete a file and a tree; their blocks go away.
	before, _ := c.StoredBlocks()
	if err := cl.Remove("/a/moved"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := cl.RemoveAll("/list"); err != nil {
		t.Fatalf("RemoveAll: %v", err)
	}
	if after, _ := c.StoredBlocks(); after != before-9 {
		t.Errorf("blocks after delete = %d, want %d", after, before-9)
	}
	if err := cl.RemoveAll("/nope"); err != nil {
		t.Errorf("RemoveAll of a missing path: %v", err)
	}

	// Attribute setters and summaries.
	if err := cl.Chmod("/a/d", 0o711); err != nil {
		t.Fatalf("Chmod: %v", err)
	}
	later := clock.Add(time.Hour)
	if err := cl.Chtimes("/a/d", later, later); err != nil {
		t.Fatalf("Chtimes: %v", err)
	}
	if fi, err := cl.Stat("/a/d"); err != nil || fi.Mode().Perm() != 0o711 || !fi.ModTime().Equal(later) {
		t.Fatalf("after Chmod/Chtimes: %v %v, %v", fi.Mode(), fi.ModTime(), err)
	}
	writeFile(t, cl, "/a/d/x", 0, []byte("hello"))
	cs, err := cl.GetContentSummary("/a")
	if err != nil || cs.FileCount() != 1 || cs.DirectoryCount() != 4 || cs.Size() != 5 {
		t.Fatalf("GetContentSummary = %+v, %v", cs, err)
	}
	if _, err := cl.StatFs(); err != nil {
		t.Fatalf("StatFs: %v", err)
	}
}

func TestAppendAndChecksum(t *testing.T) {
	c := startCluster(t, Options{BlockSize: 4096})
	cl := newClient(t, c.NameNodeAddr())
	first, second := randomBytes(1, 5000), randomBytes(2, 9000)
	writeFile(t, cl, "/app", 0, first)
	w, err := cl.Append("/app")
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if _, err := w.Write(second); err != nil {
		t.Fatalf("append write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("append close: %v", err)
	}
	got, err := cl.ReadFile("/app")
	if err != nil || !bytes.Equal(got, append(slices.Clone(first), second...)) {
		t.Fatalf("after append read %d bytes, %v; want %d", len(got), err, len(first)+len(second))
	}

	sum := func(name string) []byte {
		t.Helper()
		f, err := cl.Open(name)
		if err != nil {
			t.Fatalf("Open(%s): %v", name, err)
		}
		defer f.Close()
		s, err := f.Checksum()
		if err != nil {
			t.Fatalf("Checksum(%s): %v", name, err)
		}
		return s
	}
	data := randomBytes(3, 10000)
	writeFile(t, cl, "/s1", 0, data)
	writeFile(t, cl, "/s2", 0, data)
	data[9999] ^= 1
	writeFile(t, cl, "/s3", 0, data)
	if !bytes.Equal(sum("/s1"), sum("/s2")) {
		t.Error("equal files have different checksums")
	}
	if bytes.Equal(sum("/s1"), sum("/s3")) {
		t.Error("different files have equal checksums")
	}
}

func exceptionOf(err error) string {
	var he hdfs.Error
	if errors.As(err, &he) {
		return he.Exception()
	}
	return ""
}

func TestErrors(t *testing.T) {
	c := startCluster(t, Options{})
	cl := newClient(t, c.NameNodeAddr())
	writeFile(t, cl, "/file", 0, []byte("x"))
	if err := cl.MkdirAll("/dir/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, cl, "/secret/data", 0, []byte("x"))

	create := func(name string) error {
		w, err := cl.Create(name)
		if err != nil {
			return err
		}
		return w.Close()
	}
	tests := []struct {
		name      string
		setup     func()
		op        func() error
		is        error  // errors.Is target, or nil
		exception string // hdfs.Error exception class, or ""
	}{
		{name: "stat missing", op: func() error { _, err := cl.Stat("/missing"); return err }, is: os.ErrNotExist},
		{name: "open missing", op: func() error { _, err := cl.Open("/missing"); return err }, is: os.ErrNotExist},
		{name: "read dir missing", op: func() error { _, err := cl.ReadDir("/missing"); return err }, is: os.ErrNotExist},
		{name: "remove missing", op: func() error { return cl.Remove("/missing") }, is: os.ErrNotExist},
		{name: "rename missing", op: func() error { return cl.Rename("/missing", "/other") }, is: os.ErrNotExist},
		{name: "create without parent", op: func() error { return create("/nodir/f") }, is: os.ErrNotExist},
		{name: "mkdir without parent", op: func() error { return cl.Mkdir("/nodir/d", 0o755) }, is: os.ErrNotExist},
		{name: "create existing", op: func() error { return create("/file") }, is: os.ErrExist},
		{name: "mkdir existing", op: func() error { return cl.Mkdir("/dir", 0o755) }, is: os.ErrExist},
		{name: "remove non-empty dir", op: func() error { return cl.Remove("/dir") }, is: syscall.ENOTEMPTY},
		{name: "mkdir under a file", op: func() error { return cl.MkdirAll("/file/d", 0o755) },
			exception: "org.apache.hadoop.fs.ParentNotDirectoryException"},
		{name: "create under a file", op: func() error { return create("/file/f") },
			exception: "org.apache.hadoop.fs.ParentNotDirectoryException"},
		{name: "stat denied", setup: func() { c.Deny("/secret") },
			op: func() error { _, err := cl.Stat("/secret/data"); return err }, is: os.ErrPermission},
		{name: "read denied", op: func() error { _, err := cl.ReadFile("/secret/data"); return err }, is: os.ErrPermission},
		{name: "create denied", op: func() error { return create("/secret/new") }, is: os.ErrPermission},
		{name: "mkdir denied", op: func() error { return cl.MkdirAll("/secret/a/b", 0o755) }, is: os.ErrPermission},
		{name: "rename into denied", op: func() error { return cl.Rename("/file", "/secret/file") }, is: os.ErrPermission},
		{name: "allowed again", setup: func() { c.Allow("/secret") },
			op: func() error { _, err := cl.Stat("/secret/data"); return err }},
		{name: "mkdir in safe mode", setup: func() { c.SetSafeMode(true) },
			op:        func() error { return cl.Mkdir("/sm", 0o755) },
			exception: "org.apache.hadoop.hdfs.server.namenode.SafeModeException"},
		{name: "create in safe mode", op: func() error { return create("/sm") },
			exception: "org.apache.hadoop.hdfs.server.namenode.SafeModeException"},
		{name: "delete in safe mode", op: func() error { return cl.Remove("/file") },
			exception: "org.apache.hadoop.hdfs.server.namenode.SafeModeException"},
		{name: "read in safe mode", op: func() error { _, err := cl.ReadFile("/file"); return err }},
		{name: "safe mode off", setup: func() { c.SetSafeMode(false) }, op: func() error { return cl.Mkdir("/sm", 0o755) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			err := tt.op()
			switch {
			case tt.is == nil && tt.exception == "":
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Fatalf("error %v (exception %q), want errors.Is %v", err, exceptionOf(err), tt.is)
			case tt.exception != "" && exceptionOf(err) != tt.exception:
				t.Fatalf("error %v has exception %q, want %q", err, exceptionOf(err), tt.exception)
			}
		})
	}
}

func TestUnknownMethodIsLoggedAsError(t *testing.T) {
	rec := &recordingHandler{}
	c := startCluster(t, Options{Logger: slog.New(rec)})
	cl := newClient(t, c.NameNodeAddr())
	writeFile(t, cl, "/f", 0, []byte("x"))
	_, err := cl.ListXAttrs("/f")
	if got := exceptionOf(err); got != "org.apache.hadoop.ipc.RpcNoSuchMethodException" {
		t.Fatalf("ListXAttrs error %v (exception %q), want RpcNoSuchMethodException", err, got)
	}
	errs := rec.errors()
	if len(errs) != 1 || !strings.Contains(errs[0], "listXAttrs") {
		t.Fatalf("error logs = %q, want one naming listXAttrs", errs)
	}
}

func TestCorruptReadsAreDetected(t *testing.T) {
	tests := []struct {
		name string
		size int
		// wantErr: the client reports the corruption. colinmarc/hdfs v2.4.0
		// returns the bytes of a chunk that failed verification and reports
		// "invalid checksum" only on the following Read, so when the bad read
		// is the file's last one it returns corrupt data without an error.
		wantErr bool
	}{
		{"multi-packet multi-block file", 200_000, true},
		{"single chunk file (client hides the error)", 5, false},
	}
	c := startCluster(t, Options{BlockSize: 64 << 10})
	cl := newClient(t, c.NameNodeAddr())
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("/f%d", i)
			data := randomBytes(uint64(9+i), tt.size)
			writeFile(t, cl, name, 0, data)

			c.CorruptReads(true)
			got, err := cl.ReadFile(name)
			c.CorruptReads(false)
			switch {
			case tt.wantErr && (err == nil || !strings.Contains(err.Error(), "checksum")):
				t.Fatalf("ReadFile of corrupt data = %d bytes, %v; want a checksum error", len(got), err)
			case err == nil && bytes.Equal(got, data):
				t.Fatal("the datanode did not corrupt the data it sent")
			}
			got, err = cl.ReadFile(name)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadFile after repair: %d bytes, %v", len(got), err)
			}
		})
	}
}

// retry polls op until it succeeds or the deadline passes. The client backs
// off from a namenode for 5 s after it answered StandbyException, so right
// after a failover calls may fail with "no available namenodes" for that long.
func retry(t *testing.T, what string, op func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := op()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 20s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHAFailover(t *testing.T) {
	h, err := StartHA(Options{BlockSize: 8 << 10})
	if err != nil {
		t.Fatalf("StartHA: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	addrs := h.Addrs()
	if h.Active() != 1 {
		t.Fatalf("Active() = %d, want 1 (standby listed first)", h.Active())
	}

	t.Run("standby first in the list", func(t *testing.T) {
		cl := newClient(t, addrs...)
		if err := cl.MkdirAll("/ha", 0o755); err != nil {
			t.Fatalf("MkdirAll via standby-first list: %v", err)
		}
		data := randomBytes(11, 50_000)
		writeFile(t, cl, "/ha/before", 0, data)

		h.SwapActive()
		if h.Active() != 0 || h.NameNodeAddr() != addrs[0] {
			t.Fatalf("after SwapActive active = %d (%s)", h.Active(), h.NameNodeAddr())
		}
		var got []byte
		retry(t, "read after swap", func() (err error) { got, err = cl.ReadFile("/ha/before"); return err })
		if !bytes.Equal(got, data) {
			t.Fatal("data read through the new active namenode differs")
		}
		retry(t, "write after swap", func() error {
			cl.Remove("/ha/after")
			w, err := cl.Create("/ha/after")
			if err != nil {
				return err
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
			return w.Close()
		})
		h.SwapActive() // back to nn2 for the next subtest
	})

	t.Run("swap in the middle of a multi-block write", func(t *testing.T) {
		// A fresh client that lists the active namenode first has no
		// backoff pending, so it fails over at once.
		active := h.Active()
		cl := newClient(t, addrs[active], addrs[1-active])
		data := randomBytes(12, 40_000)
		w, err := cl.Create("/ha/mid")
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := w.Write(data[:20_000]); err != nil { // spans blocks: addBlock on the old active
			t.Fatalf("Write before swap: %v", err)
		}
		h.SwapActive()
		if _, err := w.Write(data[20_000:]); err != nil { // addBlock on the new active
			t.Fatalf("Write after swap: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Close after swap: %v", err)
		}
		got, err := cl.ReadFile("/ha/mid")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadFile: %d bytes, %v", len(got), err)
		}
	})
}

func TestWriteHadoopConf(t *testing.T) {
	h, err := StartHA(Options{})
	if err != nil {
		t.Fatalf("StartHA: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	dir := filepath.Join(t.TempDir(), "conf")
	if err := WriteHadoopConf(dir, "mycluster", h.Addrs()); err != nil {
		t.Fatalf("WriteHadoopConf: %v", err)
	}
	conf, err := hadoopconf.Load(dir)
	if err != nil {
		t.Fatalf("hadoopconf.Load: %v", err)
	}
	if conf["fs.defaultFS"] != "hdfs://mycluster" {
		t.Errorf("fs.defaultFS = %q", conf["fs.defaultFS"])
	}
	opts := hdfs.ClientOptionsFromConf(conf)
	if !slices.Equal(slices.Sorted(slices.Values(opts.Addresses)), slices.Sorted(slices.Values(h.Addrs()))) {
		t.Fatalf("namenodes from conf = %v, want %v", opts.Addresses, h.Addrs())
	}
	opts.User = "gear"
	cl, err := hdfs.NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient from conf: %v", err)
	}
	defer cl.Close()
	if err := cl.MkdirAll("/viaconf", 0o755); err != nil {
		t.Fatalf("MkdirAll via conf: %v", err)
	}

	for _, bad := range []struct{ ns string }{{""}, {"a/b"}, {"host:1"}} {
		if err := WriteHadoopConf(t.TempDir(), bad.ns, h.Addrs()); err == nil {
			t.Errorf("WriteHadoopConf(%q) succeeded, want an error", bad.ns)
		}
	}
}

func TestConcurrentClients(t *testing.T) {
	c := startCluster(t, Options{BlockSize: 16 << 10})
	const clients, files = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, clients*files)
	for i := range clients {
		cl := newClient(t, c.NameNodeAddr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range files {
				name := fmt.Sprintf("/c%d/f%d", i, j)
				data := randomBytes(uint64(i*100+j), 40_000+j)
				if err := cl.MkdirAll(filepath.Dir(name), 0o755); err != nil {
					errs <- err
					return
				}
				w, err := cl.Create(name)
				if err == nil {
					_, err = w.Write(data)
				}
				if err == nil {
					err = w.Close()
				}
				if err != nil {
					errs <- fmt.Errorf("write %s: %w", name, err)
					return
				}
				got, err := cl.ReadFile(name)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("read %s: %d bytes, %v", name, len(got), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkWriteRead measures a write and a read of an 8 MiB file in 1 MiB
// blocks through the real client, all on loopback.
func BenchmarkWriteRead(b *testing.B) {
	c, err := Start(Options{BlockSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl, err := hdfs.NewClient(hdfs.ClientOptions{Addresses: []string{c.NameNodeAddr()}, User: "gear"})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	data := randomBytes(1, 8<<20)
	b.SetBytes(int64(2 * len(data)))
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("/bench%d", i)
		w, err := cl.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		got, err := cl.ReadFile(name)
		if err != nil || len(got) != len(data) {
			b.Fatalf("read back %d bytes: %v", len(got), err)
		}
		if err := cl.Remove(name); err != nil {
			b.Fatal(err)
		}
	}
}
