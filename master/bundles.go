package master

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
)

// handleUpload streams a bundle into the jar store. Memory use is bounded
// by the copy buffer whatever the bundle's size; the object becomes
// visible only once complete and hashed. An uploader may declare the
// bundle's digest (cluster.DigestHeader): a body that does not hash to it
// is refused (400) and leaves nothing behind.
//
// A plaintext HTTP/1.1 upload of a declared length into a directory
// store takes the connection over (uploadSpliced): the body goes from
// the socket into the file by splice(2), hashed behind through mappings.
// Everything else (TLS, chunked bodies, HTTP/2, other stores) streams
// through the HTTP server's body reader.
func (m *Master) handleUpload(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	kind, err := bundle.KindOf(name)
	if err != nil {
		writeError(w, fmt.Errorf("%w: %w", ErrBadRequest, err))
		return
	}
	max := m.opts.MaxBundleSize
	if max > 0 && r.ContentLength > max {
		writeError(w, fmt.Errorf("%w: bundle %s is %d bytes, over gear.jarstore.max-bundle-size (%d bytes)", jarstore.ErrTooLarge, name, r.ContentLength, max))
		return
	}
	want := r.Header.Get(cluster.DigestHeader)
	if want != "" {
		if _, err := jarstore.ParseDigest(want); err != nil {
			writeError(w, fmt.Errorf("%w: %s header: %w", ErrBadRequest, cluster.DigestHeader, err))
			return
		}
	}
	if m.spliceable(r) && m.uploadSpliced(w, r, name, kind, want) {
		return
	}
	start := time.Now()
	var digest string
	var size int64
	if want != "" {
		digest = want
		size, err = m.blobs.PutExpect(r.Context(), r.Body, want, max)
	} else {
		digest, size, err = m.blobs.Put(r.Context(), r.Body, max)
	}
	m.stored(name, digest, size, start, "stream", err)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, cluster.Bundle{Digest: digest, Size: size, Kind: kind.BundleKind(), Name: name})
}

// stored logs and counts the end of an upload; via is "splice" or
// "stream" (uploadSpliced or the HTTP body reader). The benchmark
// (scripts/bench/jarstore) reads the "bundle stored ... took=" line.
func (m *Master) stored(name, digest string, size int64, start time.Time, via string, err error) {
	if m.metrics != nil {
		m.metrics.jar("put", size, start, err)
	}
	if err != nil {
		m.log.Warn("bundle upload failed", "name", name, "via", via, "err", err)
		return
	}
	m.log.Info("bundle stored", "name", name, "digest", digest, "size", size, "via", via, "took", time.Since(start).Round(time.Millisecond))
}

// handleGetBundle serves a bundle by digest from this master's store (a
// shared store serves from any master), else from the leader.
func (m *Master) handleGetBundle(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	start := time.Now()
	open := m.blobs.Open
	if r.Header.Get(cluster.VerifyHeader) == cluster.VerifyByClient {
		// The client hashes what it receives (a worker does): send the
		// stored bytes as they are, by sendfile from a directory store,
		// instead of hashing them here too.
		open = m.blobs.OpenUnverified
	}
	rc, size, err := open(r.Context(), digest)
	if errors.Is(err, jarstore.ErrNotFound) && !m.isLeader() && r.Header.Get(forwardedHeader) == "" {
		m.lead(func(http.ResponseWriter, *http.Request) {})(w, r)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set(cluster.DigestHeader, digest)
	n, err := io.Copy(w, rc)
	m.metrics.jar("get", n, start, err)
	if err != nil {
		m.log.Error("serving bundle failed; the reader sees a cut stream", "digest", digest, "err", err)
		panic(http.ErrAbortHandler) // never let a corrupt bundle end cleanly
	}
}

func (m *Master) handleListBundles(w http.ResponseWriter, r *http.Request) {
	infos, err := m.blobs.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	refs := map[string][]string{}
	m.fsm.read(func(s *State) {
		for _, a := range s.Apps {
			if a.State != cluster.AppKilled {
				refs[a.Bundle.Digest] = append(refs[a.Bundle.Digest], a.ID)
			}
		}
	})
	type entry struct {
		Digest  string    `json:"digest"`
		Size    int64     `json:"size"`
		ModTime time.Time `json:"mod_time"`
		Apps    []string  `json:"apps"`
	}
	out := []entry{}
	for _, in := range infos {
		d := in.Name // Blobs.List names blobs by digest
		out = append(out, entry{Digest: d, Size: in.Size, ModTime: in.ModTime, Apps: append([]string{}, refs[d]...)})
	}
	writeJSON(w, out)
}

func (m *Master) handleGC(w http.ResponseWriter, r *http.Request) {
	grace := m.opts.GCGrace
	if g := r.URL.Query().Get("grace"); g != "" {
		d, err := time.ParseDuration(g)
		if err != nil || d < 0 {
			writeError(w, fmt.Errorf("%w: grace %q is not a duration like 10m", ErrBadRequest, g))
			return
		}
		grace = d
	}
	rep, err := m.gc(r.Context(), grace)
	if err != nil {
		writeError(w, err)
		return
	}
	deleted := append([]string{}, rep.Deleted...)
	type temp struct {
		Name    string    `json:"name"`
		Size    int64     `json:"size"`
		ModTime time.Time `json:"mod_time"`
	}
	temps := []temp{}
	for _, in := range rep.Temps {
		temps = append(temps, temp{Name: in.Name, Size: in.Size, ModTime: in.ModTime})
	}
	writeJSON(w, map[string]any{"deleted": deleted, "temps_deleted": temps})
}
