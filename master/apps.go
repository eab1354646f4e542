// The applications' API: list, info, submit (validated against the limits,
// the store and the stored bundle itself), kill, restart, scale and logs.

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
)

// handleApps answers every application. The state is encoded while it is
// read-locked: apply updates executors in place.
func (m *Master) handleApps(w http.ResponseWriter, r *http.Request) {
	var b []byte
	var err error
	m.fsm.read(func(s *State) {
		apps := make([]*cluster.App, 0, len(s.Apps))
		for _, a := range s.Apps {
			apps = append(apps, a)
		}
		slices.SortFunc(apps, func(a, b *cluster.App) int { return appOrder(a.ID, b.ID) })
		b, err = json.MarshalIndent(apps, "", "  ")
	})
	writeEncoded(w, b, err)
}

func appOrder(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func (m *Master) handleApp(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var b []byte
	var err error
	m.fsm.read(func(s *State) {
		a, ok := s.Apps[id]
		if !ok {
			err = fmt.Errorf("%w: %q (see `gear app list`)", ErrNoSuchApp, id)
			return
		}
		b, err = json.MarshalIndent(a, "", "  ")
	})
	writeEncoded(w, b, err)
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
