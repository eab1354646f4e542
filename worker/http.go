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

// workerRoute is one route of the worker's HTTP. Every route needs the
// cluster token unless it is open on purpose (only /ecv, polled by load
// balancers); routes() is the one place routes are registered.
type workerRoute struct {
	pattern string
	open    bool
	h       http.HandlerFunc
}

func (w *Worker) routeTable() []workerRoute {
	return []workerRoute{
		{"GET /logs/{id}", false, w.handleLogs},
		{"GET /api/v1/executors", false, w.handleExecutors},
		{"GET /ecv", true, func(rw http.ResponseWriter, r *http.Request) {
			if w.Draining() {
				rw.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(rw, "status=DRAINING&ServeTraffic=false&worker=%s\n", w.id)
				return
			}
			fmt.Fprintf(rw, "status=AVAILABLE&ServeTraffic=true&worker=%s\n", w.id)
		}},
		{"GET /metrics", w.opts.MetricsOpen, w.handleMetrics},
	}
}

// routes is the worker's HTTP handler: every route, counted by the API
// metrics.
func (w *Worker) routes() http.Handler { return w.metrics.api.Wrap(w.serveMux()) }

// serveMux registers every route of routeTable, behind the token check
// unless it is open.
func (w *Worker) serveMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range w.routeTable() {
		h := rt.h
		if !rt.open {
			h = w.auth(h)
		}
		mux.HandleFunc(rt.pattern, h)
	}
	mux.HandleFunc("/", w.auth(http.NotFound))
	return mux
}

// auth refuses a request without the cluster token (when one is set).
func (w *Worker) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		if err := cluster.CheckToken(r, w.opts.Token); err != nil {
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("WWW-Authenticate", `Bearer realm="gear"`)
			rw.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(rw).Encode(cluster.ErrorBody{Error: "unauthorized: " + err.Error()})
			return
		}
		h(rw, r)
	}
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
