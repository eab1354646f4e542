package jarstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/jarstore/storetest"
	"github.com/gear-run/gear/test/hdfsd"
)

// These tests run the jar store's hdfs:// backend with the real
// colinmarc/hdfs client against the in-process HDFS test server in
// test/hdfsd, which speaks the namenode RPC and datanode data transfer
// protocols. Blocks are small so that the suite's multi-MiB objects span
// many blocks.

const testBlockSize = 256 << 10

func startHDFS(t *testing.T) *hdfsd.Cluster {
	t.Helper()
	c, err := hdfsd.Start(hdfsd.Options{BlockSize: testBlockSize})
	if err != nil {
		t.Fatalf("start HDFS test server: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startHDFSHA starts an HA pair (the first namenode standby) and points
// HADOOP_CONF_DIR at a configuration naming it nameservice "mycluster".
func startHDFSHA(t *testing.T) *hdfsd.HACluster {
	t.Helper()
	h, err := hdfsd.StartHA(hdfsd.Options{BlockSize: testBlockSize})
	if err != nil {
		t.Fatalf("start HDFS HA test servers: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	dir := filepath.Join(t.TempDir(), "hadoop-conf")
	if err := hdfsd.WriteHadoopConf(dir, "mycluster", h.Addrs()); err != nil {
		t.Fatalf("WriteHadoopConf: %v", err)
	}
	t.Setenv("HADOOP_CONF_DIR", dir)
	t.Setenv("HADOOP_USER_NAME", "gear")
	return h
}

func openStore(t *testing.T, root string) jarstore.Store {
	t.Helper()
	s, err := jarstore.Open(context.Background(), root, "", nil)
	if err != nil {
		t.Fatalf("jarstore.Open(%q): %v", root, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestHDFSStoreConformance(t *testing.T) {
	t.Setenv("HADOOP_USER_NAME", "gear")
	c := startHDFS(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) jarstore.Store {
		// One directory per subtest under /gear/ so each store starts empty.
		return openStore(t, fmt.Sprintf("hdfs://%s/gear/s%d/", c.NameNodeAddr(), n.Add(1)))
	})
}

func TestHDFSStoreHAConformance(t *testing.T) {
	h := startHDFSHA(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) jarstore.Store {
		// Flip the active namenode before every store, so the suite runs
		// against both namenodes and each client starts on the standby half
		// of the time.
		h.SwapActive()
		return openStore(t, fmt.Sprintf("hdfs://mycluster/gear/s%d/", n.Add(1)))
	})
}

// TestHDFSStoreHASwapBetweenOperations swaps the active namenode between
// every two operations of one open store: each operation must succeed on
// whichever namenode is active by then.
func TestHDFSStoreHASwapBetweenOperations(t *testing.T) {
	h := startHDFSHA(t)
	s := openStore(t, "hdfs://mycluster/gear/")
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*testBlockSize)/16+5)

	ops := []struct {
		name string
		op   func() error
	}{
		{"put a", func() error { _, err := s.Put(ctx, "a", bytes.NewReader(data)); return err }},
		{"get a", func() error {
			rc, err := s.Get(ctx, "a")
			if err != nil {
				return err
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("read %d bytes that differ from the %d written", len(got), len(data))
			}
			return err
		}},
		{"stat a", func() error {
			in, err := s.Stat(ctx, "a")
			if err == nil && in.Size != int64(len(data)) {
				err = fmt.Errorf("size %d, want %d", in.Size, len(data))
			}
			return err
		}},
		{"rename a b", func() error { return s.Rename(ctx, "a", "b") }},
		{"list", func() error {
			infos, err := s.List(ctx)
			if err == nil && (len(infos) != 1 || infos[0].Name != "b") {
				err = fmt.Errorf("List = %v, want [b]", infos)
			}
			return err
		}},
		{"delete b", func() error { return s.Delete(ctx, "b") }},
		{"stat b is gone", func() error {
			if _, err := s.Stat(ctx, "b"); !errors.Is(err, jarstore.ErrNotFound) {
				return fmt.Errorf("Stat after Delete: %v, want ErrNotFound", err)
			}
			return nil
		}},
	}
	for _, o := range ops {
		h.SwapActive()
		if err := o.op(); err != nil {
			t.Errorf("%s right after a namenode failover (active now %s): %v", o.name, h.NameNodeAddr(), err)
		}
	}
}

func TestHDFSStoreErrors(t *testing.T) {
	t.Setenv("HADOOP_USER_NAME", "gear")
	c := startHDFS(t)
	ctx := context.Background()
	s := openStore(t, fmt.Sprintf("hdfs://%s/gear/", c.NameNodeAddr()))
	if _, err := s.Put(ctx, "x", strings.NewReader("hello")); err != nil {
		t.Fatalf("Put: %v", err)
	}

	t.Run("safe mode", func(t *testing.T) {
		c.SetSafeMode(true)
		defer c.SetSafeMode(false)
		_, err := s.Put(ctx, "y", strings.NewReader("hello"))
		if err == nil || !strings.Contains(err.Error(), "safe mode") {
			t.Fatalf("Put in safe mode: %v, want an error saying safe mode", err)
		}
		if _, err := s.Stat(ctx, "x"); err != nil {
			t.Fatalf("Stat in safe mode: %v", err)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		c.Deny("/gear")
		defer c.Allow("/gear")
		_, err := s.Put(ctx, "y", strings.NewReader("hello"))
		if !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Put to a denied directory: %v, want os.ErrPermission", err)
		}
		if _, err := jarstore.Open(ctx, fmt.Sprintf("hdfs://%s/gear/sub/", c.NameNodeAddr()), "", nil); !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Open of a denied directory: %v, want os.ErrPermission", err)
		}
	})
	t.Run("corrupt datanode", func(t *testing.T) {
		// colinmarc/hdfs v2.4.0 hands the bytes of a chunk that failed its
		// checksum to the caller and reports "invalid checksum" only on the
		// next Read, so a corrupt final read of a file goes unnoticed by
		// Store.Get. Blobs' SHA-256 verification must catch it either way.
		blobs := jarstore.NewBlobs(s, nil)
		for _, size := range []int{5, 3*testBlockSize + 100} {
			data := bytes.Repeat([]byte{'z'}, size)
			digest, _, err := blobs.Put(ctx, bytes.NewReader(data), 1<<30)
			if err != nil {
				t.Fatalf("Blobs.Put: %v", err)
			}
			c.CorruptReads(true)
			rc, _, err := blobs.Open(ctx, digest)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			c.CorruptReads(false)
			if err == nil {
				t.Fatalf("Blobs read of %d corrupt bytes succeeded (intact: %v), want an error", size, bytes.Equal(got, data))
			}
			t.Logf("%d bytes: %v", size, err)
			if err := blobs.Verify(ctx, digest); err != nil {
				t.Fatalf("Verify after the datanode recovered: %v", err)
			}
		}
	})
	t.Run("no namenode", func(t *testing.T) {
		down := startHDFS(t)
		addr := down.NameNodeAddr()
		down.Close()
		if _, err := jarstore.Open(ctx, fmt.Sprintf("hdfs://%s/gear/", addr), "", nil); err == nil || !strings.Contains(err.Error(), addr) {
			t.Fatalf("Open with the namenode down: %v, want an error naming %s", err, addr)
		}
	})
}
