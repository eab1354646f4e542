// The applications' API: list, info, submit (validated against the limits,
// the store and the stored bundle itself), kill, restart, scale and logs.

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
)

// handleApps answers the applications in id order: all of them, or with
// ?limit=N a page of at most N (?after=ID starts after that app id; the
// answer's Gear-Next-After header names the last id when more follow).
// Only copying the apps holds the state's read lock, so that applies do
// not wait for the encoding; the answer is compact JSON (10 000 apps:
// 14 MB indented, a third less compact).
func (m *Master) handleApps(w http.ResponseWriter, r *http.Request) {
	limit, after, err := pageParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var apps []cluster.App
	var more bool
	m.fsm.read(func(s *State) { apps, more = s.appPage(limit, after) })
	if more && len(apps) > 0 {
		w.Header().Set("Gear-Next-After", apps[len(apps)-1].ID)
	}
	writeCompact(w, apps)
}

// writeCompact answers v as compact JSON, encoded straight into the
// answer (json.Marshal would copy the 12 MB of 10 000 apps once more). An
// encoding error comes before anything is written, so it is answered as
// an error.
func writeCompact(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	var cw countingWriter
	cw.w = w
	if err := json.NewEncoder(&cw).Encode(v); err != nil && cw.n == 0 {
		writeError(w, err)
	}
}

// countingWriter counts what reached w.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// pageParams reads ?limit= and ?after= (limit 0: no limit).
func pageParams(r *http.Request) (limit int, after string, err error) {
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, "", fmt.Errorf("%w: limit=%q: want a whole number >= 0 of apps per page (0 or none: all)", ErrBadRequest, v)
		}
		limit = n
	}
	return limit, q.Get("after"), nil
}

// appPage copies, in id order, the apps after the id after ("" = from the
// first), at most limit of them (0 = all), and says whether more follow.
// The copies (see copyApp) stay valid outside the read lock.
func (s *State) appPage(limit int, after string) ([]cluster.App, bool) {
	ptrs := make([]*cluster.App, 0, len(s.Apps))
	for _, a := range s.Apps {
		if after == "" || appOrder(a.ID, after) > 0 {
			ptrs = append(ptrs, a)
		}
	}
	slices.SortFunc(ptrs, func(a, b *cluster.App) int { return appOrder(a.ID, b.ID) })
	more := false
	if limit > 0 && len(ptrs) > limit {
		ptrs, more = ptrs[:limit], true
	}
	apps := make([]cluster.App, len(ptrs))
	for i, a := range ptrs {
		apps[i] = copyApp(a)
	}
	return apps, more
}

// copyApp copies what apply changes in place (the executors, the process
// groups); everything else apply only replaces (Versions is copied before
// a rollback marks one; see clone).
func copyApp(a *cluster.App) cluster.App {
	c := *a
	c.Processes = slices.Clone(a.Processes)
	c.Executors = slices.Clone(a.Executors)
	if c.Executors == nil {
		c.Executors = []cluster.Executor{}
	}
	return c
}

func appOrder(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func (m *Master) handleApp(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var app cluster.App
	var err error
	m.fsm.read(func(s *State) {
		a, ok := s.Apps[id]
		if !ok {
			err = fmt.Errorf("%w: %q (see `gear app list`)", ErrNoSuchApp, id)
			return
		}
		app = copyApp(a)
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeCompact(w, &app)
}

func (m *Master) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req cluster.SubmitRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := m.validateSubmit(r.Context(), &req); err != nil {
		writeError(w, err)
		return
	}
	lim := m.opts.Limits
	res, err := m.apply(command{Op: opSubmit, Submit: &req, Limits: &lim})
	if err == nil {
		m.kickSchedule()
	}
	if err != nil {
		writeError(w, err)
		return
	}
	m.log.Info("application submitted", "app", res.ID, "name", shorten(req.Name), "bundle", req.Bundle.Digest)
	writeJSON(w, map[string]string{"id": res.ID})
}

func (m *Master) validateSubmit(ctx context.Context, req *cluster.SubmitRequest) error {
	if req.Name == "" {
		return fmt.Errorf("%w: the application has no name (set name in gear-app.conf or pass -name)", ErrBadRequest)
	}
	if err := m.opts.Limits.checkApp(req.Name, req.Processes); err != nil {
		return err
	}
	if err := cluster.ValidateProcesses(req.Processes); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := req.Bundle.Kind.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	switch _, err := m.blobs.Stat(ctx, req.Bundle.Digest); {
	case errors.Is(err, jarstore.ErrNotFound), errors.Is(err, jarstore.ErrInvalidDigest):
		// Final: retrying cannot make the bundle appear.
		return fmt.Errorf("%w: bundle %s is not in the jar store (upload it first with `gear app submit`): %v", ErrBadRequest, req.Bundle.Digest, err)
	case err != nil:
		// The store could not answer (NFS or HDFS unreachable, an I/O
		// error): 503, which the CLI retries as it does for no leader.
		return fmt.Errorf("%w: cannot check bundle %s in the jar store; retry once the store answers: %w", ErrStoreUnavailable, req.Bundle.Digest, err)
	}
	// Too large for one raft entry: say so before reading the bundle.
	if _, err := encodeCommand(command{Op: opSubmit, Submit: req}); err != nil {
		return err
	}
	return m.checkAgainstBundle(ctx, req) // inspect.go
}

func (m *Master) handleKill(w http.ResponseWriter, r *http.Request) {
	res, err := m.apply(command{Op: opKill, App: r.PathValue("id")})
	if err != nil {
		writeError(w, err)
		return
	}
	m.log.Info("application killed", "app", res.ID)
	writeJSON(w, map[string]string{"id": res.ID})
}

func (m *Master) handleRestart(w http.ResponseWriter, r *http.Request) {
	var req cluster.RestartRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	res, err := m.apply(command{Op: opRestart, App: r.PathValue("id"), Restart: &req})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, map[string]string{"id": res.ID})
}

// handleDisable takes an app out of rotation (disable) or back (enable):
// a replicated flag its executors' /ecv pages on the workers follow.
func (m *Master) handleDisable(disable bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := m.apply(command{Op: opDisable, App: r.PathValue("id"), Disable: &disable})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, map[string]any{"id": res.ID, "disabled": disable})
	}
}

func (m *Master) handleScale(w http.ResponseWriter, r *http.Request) {
	var req cluster.ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	lim := m.opts.Limits
	res, err := m.apply(command{Op: opScale, App: r.PathValue("id"), Scale: &req, Limits: &lim})
	if err == nil {
		m.kickSchedule()
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, map[string]string{"id": res.ID})
}

// handleLogs proxies to the worker that runs the executor.
func (m *Master) handleLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	exec := r.URL.Query().Get("executor")
	var target *cluster.Executor
	m.fsm.read(func(s *State) {
		app, ok := s.Apps[id]
		if !ok {
			return
		}
		for _, e := range app.Executors {
			if (exec == "" || e.ID == exec) && e.WorkerAddr != "" {
				c := e
				target = &c
				return
			}
		}
	})
	if target == nil {
		writeError(w, fmt.Errorf("%w: app %q has no placed executor %q", ErrNoSuchApp, id, exec))
		return
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: m.scheme(), Host: target.WorkerAddr})
			pr.Out.URL.Path = "/logs/" + target.ID
			cluster.SetToken(pr.Out.Header, m.opts.Token) // the worker's log route needs it too
		},
		FlushInterval: -1,
		Transport:     m.peerTransport(),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, fmt.Errorf("worker %s (%s) did not answer: %v", target.Worker, target.WorkerAddr, err))
		},
	}
	proxy.ServeHTTP(w, r)
}
