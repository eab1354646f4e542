package master

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
)

// statFailStore is a jar store whose Stat fails as an unreachable NFS or
// HDFS store does.
type statFailStore struct {
	jarstore.Store
	err error
}

func (s statFailStore) Stat(context.Context, string) (jarstore.Info, error) {
	return jarstore.Info{}, s.err
}

// writeTarGz writes a .tar.gz holding files (name -> content) to path.
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestValidateSubmitStoreErrors: a bundle the store says is missing is a
// final 400; a store that cannot answer is a 503, which the client retries.
func TestValidateSubmitStoreErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	mem := jarstore.NewBlobs(jarstore.NewMem(nil), log)
	// A real bundle, read as the CLI reads it: the master inspects what it
	// stores and compares the submit's processes with it.
	path := filepath.Join(t.TempDir(), "web.tar.gz")
	writeTarGz(t, path, map[string]string{
		"gear-app.conf": "name = \"web\"\nprocesses { web { command = [\"./server\"], instances = 1 } }\n",
		"server":        "#!/bin/sh\nsleep 1000\n",
	})
	man, _, err := bundle.Inspect(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := mem.Put(ctx, bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	missing := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name   string
		blobs  *jarstore.Blobs
		digest string
		status int // 0: valid
	}{
		{"stored", mem, stored, 0},
		{"not found", mem, missing, http.StatusBadRequest},
		{"invalid digest", mem, "sha256:nothex", http.StatusBadRequest},
		{"I/O error", jarstore.NewBlobs(statFailStore{jarstore.NewMem(nil), syscall.EIO}, log), missing, http.StatusServiceUnavailable},
		{"unreachable", jarstore.NewBlobs(statFailStore{jarstore.NewMem(nil), errors.New("dial tcp 127.0.0.1:8020: connect: connection refused")}, log), missing, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Master{opts: Options{Limits: *testLimits()}, blobs: tt.blobs}
			req := cluster.SubmitRequest{Name: "web", Bundle: cluster.Bundle{Digest: tt.digest, Kind: cluster.KindTarGz},
				Processes: man.Processes}
			err := m.validateSubmit(ctx, &req)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("valid submit refused: %v", err)
				}
				return
			}
			rec := httptest.NewRecorder()
			writeError(rec, err)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (err %v)", rec.Code, tt.status, err)
			}
			if !strings.Contains(err.Error(), tt.digest) {
				t.Fatalf("the error must name the bundle: %v", err)
			}
		})
	}
}

// TestValidateSubmitUsesProcessValidation: the master refuses what
// cluster.ValidateProcesses refuses (the check the CLI runs before it
// uploads), as a 400.
func TestValidateSubmitUsesProcessValidation(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	m := &Master{opts: Options{Limits: *testLimits()}, blobs: jarstore.NewBlobs(jarstore.NewMem(nil), log)}
	for _, ps := range [][]cluster.Process{
		nil,
		{{Name: "web", Command: []string{"x"}, Restart: "sometimes"}},
		{{Name: "a.b", Command: []string{"x"}}},
		{{Name: "web", Command: []string{"x"}}, {Name: "web", Command: []string{"y"}}},
		{{Name: "web", Command: []string{"x"}, Health: &cluster.Health{HTTP: "ecv", Port: 80}}},
	} {
		want := cluster.ValidateProcesses(ps)
		if want == nil {
			t.Fatalf("%+v: ValidateProcesses accepts it; the case is wrong", ps)
		}
		req := cluster.SubmitRequest{Name: "web", Bundle: cluster.Bundle{Digest: "sha256:" + strings.Repeat("0", 64), Kind: cluster.KindTarGz}, Processes: ps}
		err := m.validateSubmit(context.Background(), &req)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), want.Error()) {
			t.Fatalf("%+v: got %v, want a bad request saying %q", ps, err, want)
		}
	}
}

// TestHealthReplicated: the manifest's health check is part of the process
// definition the masters replicate (through the raft entry's JSON) and hand
// to workers in their assignments.
func TestHealthReplicated(t *testing.T) {
	h := &cluster.Health{HTTP: "/ecv", Port: 8080, Interval: 2 * time.Second, Timeout: time.Second}
	b, err := encodeCommand(*submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1, Health: h}))
	if err != nil {
		t.Fatal(err)
	}
	var c command
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	s := newState()
	if r := s.apply(&c); r.Err != nil {
		t.Fatal(r.Err)
	}
	got := s.Apps["1"].Processes[0].Health
	if got == nil || !reflect.DeepEqual(*got, *h) {
		t.Fatalf("replicated health %+v, want %+v", got, h)
	}
	// What the worker decodes from a heartbeat reply.
	ab, err := json.Marshal(cluster.Assignment{Process: s.Apps["1"].Processes[0]})
	if err != nil {
		t.Fatal(err)
	}
	var a cluster.Assignment
	if err := json.Unmarshal(ab, &a); err != nil {
		t.Fatal(err)
	}
	if a.Process.Health == nil || !reflect.DeepEqual(*a.Process.Health, *h) {
		t.Fatalf("assignment health %+v, want %+v", a.Process.Health, h)
	}
}
