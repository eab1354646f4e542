package master

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
)

// A download marked as verified by the client (a worker's) gets the
// stored bytes as they are, even corrupt ones, since the client hashes
// them; a plain download is verified by the master and cut short.
func TestGetBundleVerifiedByClientOrMaster(t *testing.T) {
	dir := t.TempDir()
	store, err := jarstore.Open(context.Background(), "file://"+dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := &Master{blobs: jarstore.NewBlobs(store, nil), log: slog.New(slog.DiscardHandler)}
	data := bytes.Repeat([]byte("bundle bytes "), 100000)
	digest, _, err := m.blobs.Put(context.Background(), bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := jarstore.ObjectName(digest)
	data[len(data)/2] ^= 1
	if err := os.WriteFile(filepath.Join(dir, obj), data, 0o644); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/bundles/{digest}", m.handleGetBundle)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(verifyByClient bool) ([]byte, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/bundles/"+digest, nil)
		if verifyByClient {
			req.Header.Set(cluster.VerifyHeader, cluster.VerifyByClient)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}
	got, err := get(true)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("verified by the client: %d bytes, err %v; want the %d stored bytes", len(got), err, len(data))
	}
	if got, err := get(false); err == nil {
		t.Fatalf("a plain download of a corrupt bundle ended cleanly after %d bytes", len(got))
	}
}
