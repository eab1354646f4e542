package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
)

func (w *Worker) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /logs/{id}", w.handleLogs)
	mux.HandleFunc("GET /api/v1/executors", w.handleExecutors)
	mux.HandleFunc("GET /ecv", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "status=AVAILABLE&ServeTraffic=true&worker=%s\n", w.id)
	})
	mux.HandleFunc("GET /metrics", w.handleMetrics)
	return w.metrics.api.Wrap(mux)
}

func (w *Worker) handleExecutors(rw http.ResponseWriter, r *http.Request) {
	hb := w.heartbeat()
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(hb)
}

// handleLogs streams an executor's log: the last ?lines= lines (default
// 100), then, with ?follow=1, whatever is appended until the client leaves.
func (w *Worker) handleLogs(rw http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		http.Error(rw, `{"error":"bad executor id"}`, http.StatusBadRequest)
		return
	}
	path := filepath.Join(w.opts.DataDir, "logs", id+".log")
	lines := 100
	if s := r.URL.Query().Get("lines"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			lines = n
		}
	}
	if _, err := os.Stat(path); err != nil {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(rw).Encode(cluster.ErrorBody{Error: fmt.Sprintf("no log for executor %s on worker %s yet", id, w.id)})
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range procs.Tail(path, lines) {
		fmt.Fprintln(rw, l)
	}
	if r.URL.Query().Get("follow") == "" {
		return
	}
	flusher, _ := rw.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer func() { f.Close() }()
	offset, _ := f.Seek(0, io.SeekEnd)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		// A rotation replaces the file: reopen when it shrank or changed.
		if st, err := os.Stat(path); err == nil && st.Size() < offset {
			f.Close()
			if f, err = os.Open(path); err != nil {
				return
			}
			offset = 0
		}
		for {
			n, err := f.ReadAt(buf, offset)
			if n > 0 {
				if _, werr := rw.Write(buf[:n]); werr != nil {
					return
				}
				offset += int64(n)
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return
				}
				break
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// sortedExecs returns the executors by id. Caller must not hold w.mu.
func (w *Worker) sortedExecs() []*executor {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*executor, 0, len(w.execs))
	for _, e := range w.execs {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *executor) int { return strings.Compare(a.id, b.id) })
	return out
}
