package master

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
)

// uploadServer serves POST /api/v1/bundles from a master with a file://
// jar store in a temporary directory; tls picks an https server (where
// the upload cannot be spliced).
func uploadServer(t *testing.T, tls bool, max int64) (*httptest.Server, string, *syncBuffer) {
	t.Helper()
	srv, dir, logs, _ := uploadMaster(t, tls, max)
	return srv, dir, logs
}

// uploadMaster is uploadServer that also returns the master.
func uploadMaster(t *testing.T, tls bool, max int64) (*httptest.Server, string, *syncBuffer, *Master) {
	t.Helper()
	logs := &syncBuffer{}
	dir := t.TempDir()
	store, err := jarstore.Open(context.Background(), "file://"+dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m := &Master{blobs: jarstore.NewBlobs(store, nil), log: slog.New(slog.NewTextHandler(logs, nil))}
	m.opts.MaxBundleSize = max
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/bundles", m.handleUpload)
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(mux)
	} else {
		srv = httptest.NewServer(mux)
	}
	t.Cleanup(srv.Close)
	return srv, dir, logs, m
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// storeFiles lists what the store directory holds.
func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func upload(t *testing.T, srv *httptest.Server, body []byte, hdr http.Header) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/bundles?name=b.tar.gz", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// An upload over plaintext (spliced) and over TLS (streamed) stores the
// same blob under its digest, and a declared digest is checked: a body
// that hashes to something else is refused with 400 and leaves nothing.
func TestUploadSplicedAndTLS(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+123) // ~3 MiB, not chunk-aligned
	want := digestOf(data)
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%t", tls), func(t *testing.T) {
			srv, dir, logs := uploadServer(t, tls, 0)
			code, out := upload(t, srv, data, nil)
			via := map[bool]string{false: "via=splice", true: "via=stream"}[tls]
			if !strings.Contains(logs.String(), via) {
				t.Fatalf("the upload did not go %s; log:\n%s", via, logs)
			}
			var b cluster.Bundle
			if code != 200 || json.Unmarshal(out, &b) != nil || b.Digest != want || b.Size != int64(len(data)) {
				t.Fatalf("upload: %d %s; want 200 with digest %s size %d", code, out, want, len(data))
			}
			obj, _ := jarstore.ObjectName(want)
			got, err := os.ReadFile(dir + "/" + obj)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stored blob: %d bytes, err %v; want the %d uploaded bytes", len(got), err, len(data))
			}
			// The same upload declaring its digest is accepted.
			if code, out := upload(t, srv, data, http.Header{cluster.DigestHeader: {want}}); code != 200 {
				t.Fatalf("upload with its own digest declared: %d %s", code, out)
			}
			// A damaged body against the declared digest is refused.
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 1
			code, out = upload(t, srv, bad, http.Header{cluster.DigestHeader: {want}})
			if code != http.StatusBadRequest || !strings.Contains(string(out), "declared") {
				t.Fatalf("damaged upload: %d %s; want 400 naming the declared digest", code, out)
			}
			if files := storeFiles(t, dir); len(files) != 1 || files[0] != obj {
				t.Fatalf("store holds %v after the refused upload; want only %s", files, obj)
			}
			// A malformed declared digest is refused before any byte is stored.
			if code, out := upload(t, srv, data, http.Header{cluster.DigestHeader: {"sha256:xyz"}}); code != http.StatusBadRequest {
				t.Fatalf("upload with a malformed digest: %d %s; want 400", code, out)
			}
		})
	}
}

// A client that closes the connection before the declared length gets
// its upload dropped: no blob, no temporary file.
func TestUploadSplicedTruncated(t *testing.T) {
	srv, dir, _ := uploadServer(t, false, 0)
	addr := strings.TrimPrefix(srv.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	size := 20 << 20
	fmt.Fprintf(c, "POST /api/v1/bundles?name=b.tar.gz HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", addr, size)
	part := bytes.Repeat([]byte{7}, 9<<20) // past the first chunk
	if _, err := c.Write(part); err != nil {
		t.Fatal(err)
	}
	// Wait until the master has the temporary file, then cut the upload.
	deadline := time.Now().Add(10 * time.Second)
	for len(storeFiles(t, dir)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no temporary file appeared for the upload")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the cut upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "cut short") {
		t.Fatalf("cut upload: %d %s; want 400 saying it was cut short", resp.StatusCode, body)
	}
	deadline = time.Now().Add(10 * time.Second)
	for files := storeFiles(t, dir); len(files) != 0; files = storeFiles(t, dir) {
		if time.Now().After(deadline) {
			t.Fatalf("the cut upload left %v in the store", files)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client that sends "Expect: 100-continue" (curl does for large bodies)
// gets the interim answer on the hijacked connection and then its result.
func TestUploadSplicedExpectContinue(t *testing.T) {
	srv, _, _ := uploadServer(t, false, 0)
	addr := strings.TrimPrefix(srv.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	data := bytes.Repeat([]byte("x"), 5<<20)
	fmt.Fprintf(c, "POST /api/v1/bundles?name=b.tar.gz HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(data))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("first answer line %q (err %v); want 100 Continue", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b cluster.Bundle
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != 200 || b.Digest != digestOf(data) {
		t.Fatalf("answer %d, bundle %+v (err %v); want 200 with digest %s", resp.StatusCode, b, err, digestOf(data))
	}
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A .tar.gz received by splice is inspected while it arrives: its submit
// (also with arguments) is checked against the bundle without reading the
// stored bundle again. A bad bundle is not remembered: its submit
// inspects the stored file and says what is wrong.
func TestUploadInspectsWhileReceived(t *testing.T) {
	srv, dir, logs, m := uploadMaster(t, false, 0)
	path := filepath.Join(t.TempDir(), "web.tar.gz")
	noise := make([]byte, 20<<20) // past a few chunks of the receive
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	writeTarGz(t, path, map[string]string{
		"gear-app.conf": "name = \"web\"\nprocesses { web { command = [\"./server\"], instances = 1 } }\n",
		"server":        "#!/bin/sh\nsleep 1000\n",
		"noise":         string(noise),
	})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out := upload(t, srv, data, nil)
	var b cluster.Bundle
	if code != 200 || json.Unmarshal(out, &b) != nil || !strings.Contains(logs.String(), "via=splice") {
		t.Fatalf("upload: %d %s; log:\n%s", code, out, logs)
	}
	// The stored file goes: a submit that had to read it would fail.
	obj, _ := jarstore.ObjectName(b.Digest)
	if err := os.Remove(filepath.Join(dir, obj)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, args := range [][]string{nil, {"-v", "x"}} {
		req := cluster.SubmitRequest{Name: "web", Bundle: cluster.Bundle{Digest: b.Digest, Kind: cluster.KindTarGz, Name: "web.tar.gz"}, Args: args,
			Processes: []cluster.Process{{Name: "web", Command: append([]string{"./server"}, args...), Instances: 3, Restart: cluster.RestartAlways}}}
		if err := m.checkAgainstBundle(ctx, &req); err != nil {
			t.Fatalf("submit with args %q after an inspected upload: %v", args, err)
		}
		// A forged command is still refused from what was read.
		req.Processes[0].Command = []string{"/bin/sh", "-c", "evil"}
		if err := m.checkAgainstBundle(ctx, &req); err == nil || !strings.Contains(err.Error(), "evil") {
			t.Fatalf("forged submit with args %q: %v; want a refusal naming the command", args, err)
		}
	}

	// Not a tar.gz at all: nothing remembered, the submit reads the
	// stored file and refuses it.
	junk := bytes.Repeat([]byte("junk"), 3<<20)
	code, out = upload(t, srv, junk, nil)
	if code != 200 || json.Unmarshal(out, &b) != nil {
		t.Fatalf("upload: %d %s", code, out)
	}
	req := cluster.SubmitRequest{Name: "web", Bundle: cluster.Bundle{Digest: b.Digest, Kind: cluster.KindTarGz, Name: "b.tar.gz"},
		Processes: []cluster.Process{{Name: "web", Command: []string{"./server"}, Instances: 1}}}
	if err := m.checkAgainstBundle(ctx, &req); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("submit of a junk bundle: %v; want the inspection's refusal", err)
	}
}
