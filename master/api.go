package master

import (
	"context"
	"crypto/subtle"
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
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
)

const forwardedHeader = "X-Gear-Forwarded-By"

func (m *Master) routes() http.Handler {
	mux := http.NewServeMux()
	js := m.jsonLimit()
	// Answered by every master from its own view.
	mux.HandleFunc("GET /api/v1/status", m.handleStatus)
	mux.HandleFunc("GET /api/v1/masters", m.handleMasters)
	mux.HandleFunc("GET /ecv", m.handleECV)
	mux.HandleFunc("POST /ecv/enable", m.auth(js.wrap(m.handleECVToggle(false))))
	mux.HandleFunc("POST /ecv/disable", m.auth(js.wrap(m.handleECVToggle(true))))
	mux.HandleFunc("GET /metrics", m.handleMetrics)
	mux.HandleFunc("GET /api/v1/bundles/{digest}", m.handleGetBundle)
	// Answered by the leader; other masters forward. Bodies over their
	// limit are refused before anything is forwarded.
	mux.HandleFunc("GET /api/v1/apps", m.lead(m.handleApps))
	mux.HandleFunc("GET /api/v1/apps/{id}", m.lead(m.handleApp))
	mux.HandleFunc("POST /api/v1/apps", m.auth(js.wrap(m.lead(m.handleSubmit))))
	mux.HandleFunc("POST /api/v1/apps/{id}/kill", m.auth(js.wrap(m.lead(m.handleKill))))
	mux.HandleFunc("POST /api/v1/apps/{id}/restart", m.auth(js.wrap(m.lead(m.handleRestart))))
	mux.HandleFunc("POST /api/v1/apps/{id}/scale", m.auth(js.wrap(m.lead(m.handleScale))))
	mux.HandleFunc("GET /api/v1/apps/{id}/logs", m.lead(m.handleLogs))
	mux.HandleFunc("GET /api/v1/workers", m.lead(m.handleWorkers))
	mux.HandleFunc("POST /api/v1/workers/heartbeat", m.auth(js.wrap(m.lead(m.handleHeartbeat))))
	mux.HandleFunc("POST /api/v1/workers/{id}/remove", m.auth(js.wrap(m.lead(m.handleRemoveWorker))))
	mux.HandleFunc("POST /api/v1/bundles", m.auth(m.bundleLimit().wrap(m.lead(m.handleUpload))))
	mux.HandleFunc("GET /api/v1/bundles", m.lead(m.handleListBundles))
	mux.HandleFunc("POST /api/v1/jarstore/gc", m.auth(js.wrap(m.lead(m.handleGC))))
	mux.HandleFunc("POST /api/v1/masters/add", m.auth(js.wrap(m.lead(m.handleAddMaster))))
	mux.HandleFunc("POST /api/v1/masters/remove", m.auth(js.wrap(m.lead(m.handleRemoveMaster))))
	// The state holds worker secrets' hashes: saving needs the token too.
	mux.HandleFunc("GET /api/v1/snapshot", m.auth(m.lead(m.handleSnapshotSave)))
	mux.HandleFunc("POST /api/v1/snapshot/restore", m.auth(bodyLimit{max: maxSnapshotBody, what: "the snapshot restore limit"}.wrap(m.lead(m.handleSnapshotRestore))))
	mux.HandleFunc("/", m.handleDashboard)
	return mux
}

// maxJSONBody bounds the body of every JSON request.
const maxJSONBody = 8 << 20

// bodyLimit is one route's bound on request bodies and how to name it in
// the refusal.
type bodyLimit struct {
	max  int64 // <= 0: unbounded
	what string
	// streamed: the leader's handler enforces the limit itself (with a
	// message that names the bundle), so only a body that is forwarded to
	// the leader is checked here.
	streamed bool
	leading  func() bool
}

func (m *Master) jsonLimit() bodyLimit {
	return bodyLimit{max: maxJSONBody, what: "the API's limit for JSON requests"}
}

// bundleLimit bounds uploads by gear.jarstore.max-bundle-size. The leader's
// jar store enforces it again while streaming (with its own message).
func (m *Master) bundleLimit() bodyLimit {
	return bodyLimit{max: m.opts.MaxBundleSize, what: "gear.jarstore.max-bundle-size", streamed: true, leading: m.isLeader}
}

// tooLargeError is a body over its route's limit. It reads as the limit
// and what sets it, and matches ErrTooLarge.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string        { return e.msg }
func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }

func (l bodyLimit) err() error {
	return &tooLargeError{fmt.Sprintf("request body over %s (%s)", config.FormatSize(l.max), l.what)}
}

// wrap refuses a body that declares a length over the limit at once, on
// whichever master receives it, and cuts off one that grows past it while
// it is read (by a handler or by the proxy to the leader).
func (l bodyLimit) wrap(h http.HandlerFunc) http.HandlerFunc {
	if l.max <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if l.streamed && l.leading() {
			h(w, r)
			return
		}
		if r.ContentLength > l.max {
			// The body stays unread: the server closes the connection
			// after this answer instead of draining it.
			w.Header().Set("Connection", "close")
			writeError(w, l.err())
			return
		}
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, l.max), limit: l}
		h(w, r)
	}
}

// limitedBody turns http.MaxBytesReader's error into the route's own.
type limitedBody struct {
	io.ReadCloser
	limit bodyLimit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = b.limit.err()
	}
	return n, err
}

// writeJSON answers v with status 200.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers err with the status its kind calls for.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoSuchApp), errors.Is(err, ErrNoSuchWorker), errors.Is(err, ErrNoSuchMaster), errors.Is(err, jarstore.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrTooLarge), errors.Is(err, jarstore.ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadRequest), errors.Is(err, jarstore.ErrDigestMismatch), errors.Is(err, jarstore.ErrInvalidDigest):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, ErrNoLeader):
		status = http.StatusServiceUnavailable
	case errors.Is(err, jarstore.ErrNoSpace), errors.Is(err, ErrDiskFull):
		status = http.StatusInsufficientStorage
	case errors.Is(err, ErrStorage), errors.Is(err, ErrStoreMarker):
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(cluster.ErrorBody{Error: err.Error()})
}

// auth rejects mutating calls without the cluster token.
func (m *Master) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m.opts.Token != "" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(m.opts.Token)) != 1 {
				what := "wrong"
				if got == "" {
					what = "missing"
				}
				writeError(w, fmt.Errorf("%w: %s cluster token; pass -token, or set GEAR_TOKEN or gear.auth.token to the masters' token", ErrUnauthorized, what))
				return
			}
		}
		h(w, r)
	}
}

// lead runs h on the leader and forwards the request to it from any other
// master, streaming bodies both ways.
func (m *Master) lead(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m.isLeader() {
			h(w, r)
			return
		}
		leader := m.leader()
		if leader == "" || leader == m.self || r.Header.Get(forwardedHeader) != "" {
			if p := m.raft.wal.problem(); p != nil {
				writeError(w, p) // no leader because this master cannot write its log
				return
			}
			writeError(w, fmt.Errorf("%w: %s", ErrNoLeader, m.quorumReport()))
			return
		}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(&url.URL{Scheme: "http", Host: leader})
				pr.Out.Header.Set(forwardedHeader, m.self)
			},
			FlushInterval: -1,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				if errors.Is(err, ErrTooLarge) {
					// The body grew past its limit while it was
					// forwarded: the leader is fine, the request is not.
					writeError(w, err)
					return
				}
				writeError(w, fmt.Errorf("%w: the leader %s did not answer (%v); retry in a moment", ErrNoLeader, leader, err))
			},
		}
		proxy.ServeHTTP(w, r)
	}
}

// status is one master's own view of the group.
type status struct {
	Addr        string    `json:"addr"`
	State       string    `json:"state"`
	Term        uint64    `json:"term"`
	Leader      string    `json:"leader"`
	LastContact time.Time `json:"last_contact,omitzero"`
	CommitIndex uint64    `json:"commit_index"`
	Voters      []string  `json:"voters"`
	Boot        string    `json:"boot"`
	LastIndex   uint64    `json:"last_index"`
	// CommitStalledSince is set while the commit index stands still
	// behind the last log index (for a quarter of the failover timeout).
	CommitStalledSince time.Time `json:"commit_stalled_since,omitzero"`
	// StorageError says why this master cannot write its raft log (disk
	// full), "" when it can.
	StorageError string `json:"storage_error,omitempty"`
	// Applied is this master's applied index: the leader promotes a
	// non-voter once it is close to the commit index (membership.go).
	Applied   uint64   `json:"applied_index"`
	Nonvoters []string `json:"nonvoters,omitempty"`
	// Suffrage is this master's own: voter, nonvoter, or "" when it is in
	// no configuration it knows of (a fresh master waiting to be added).
	Suffrage string `json:"suffrage,omitempty"`
}

func (m *Master) status() status {
	r := m.raft.raft
	st := status{
		Addr: m.self, State: strings.ToLower(r.State().String()), Term: r.CurrentTerm(),
		Leader: m.leader(), CommitIndex: r.CommitIndex(), Voters: m.raft.voters(), Boot: m.boot,
		LastIndex: r.LastIndex(), CommitStalledSince: m.commitStalledSince(), Applied: r.AppliedIndex(),
	}
	if ms, _, err := m.raft.members(); err == nil {
		for _, s := range ms {
			if s.Suffrage == "nonvoter" {
				st.Nonvoters = append(st.Nonvoters, s.Addr)
			}
			if s.Addr == m.self {
				st.Suffrage = s.Suffrage
			}
		}
	}
	if p := m.raft.wal.problem(); p != nil {
		st.StorageError = p.Error()
	}
	if r.State() == raft.Leader {
		st.LastContact = time.Now()
	} else {
		st.LastContact = r.LastContact()
	}
	return st
}

func (m *Master) handleStatus(w http.ResponseWriter, r *http.Request) { writeJSON(w, m.status()) }

// handleMasters asks every voter for its own status, so the answer says
// who is leader, who follows and who cannot be reached from here.
func (m *Master) handleMasters(w http.ResponseWriter, r *http.Request) {
	voters := m.raft.voters()
	all, _, _ := m.raft.members()
	views := make([]cluster.Master, len(all))
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 500 * time.Millisecond}
	for i, mem := range all {
		v := mem.Addr
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i] = cluster.Master{Addr: v, State: "unreachable", Suffrage: mem.Suffrage}
			var st status
			if v == m.self {
				st = m.status()
			} else if err := getJSON(r.Context(), client, "http://"+v+"/api/v1/status", &st); err != nil {
				views[i].Error = err.Error()
				return
			}
			views[i] = cluster.Master{Addr: v, State: st.State, Term: st.Term, LastContact: st.LastContact, Leader: st.Leader, CommitIndex: st.CommitIndex,
				LastIndex: st.LastIndex, CommitStalledSince: st.CommitStalledSince, Suffrage: mem.Suffrage, AppliedIndex: st.Applied}
			views[i].Error = st.StorageError
		}()
	}
	wg.Wait()
	// The group has quorum when a majority answers and agrees on a leader
	// that itself answers as leader, and that leader's commit index is not
	// stalled (a leader that cannot commit takes no writes).
	leaders := map[string]int{}
	for _, v := range views {
		if v.State != "unreachable" && v.Leader != "" && v.Suffrage == "voter" {
			leaders[v.Leader]++
		}
	}
	quorum := false
	for l, n := range leaders {
		for _, v := range views {
			if v.Addr == l && v.State == "leader" && v.CommitStalledSince.IsZero() && n >= len(voters)/2+1 && v.Suffrage == "voter" {
				quorum = true
			}
		}
	}
	for i := range views {
		views[i].Quorum = quorum
	}
	writeJSON(w, views)
}

func getJSON(ctx context.Context, c *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// handleECV is cluster2's health page: 200 while serving, 400 when
// disabled by an operator or without a leader.
func (m *Master) handleECV(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Since", m.started.Format(time.RFC1123))
	ok := !m.ecvDisabled.Load() && m.leader() != ""
	state := "AVAILABLE"
	if m.ecvDisabled.Load() {
		state = "DISABLED"
	} else if !ok {
		state = "NO_LEADER"
	}
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
	}
	fmt.Fprintf(w, "status=%s&ServeTraffic=%t&ip=%s&port=%d&role=%s&time=%s\n",
		state, ok, m.opts.IP, m.opts.Port, strings.ToLower(m.raft.raft.State().String()), time.Now().Format(time.RFC3339))
}

func (m *Master) handleECVToggle(disable bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m.ecvDisabled.Store(disable)
		w.WriteHeader(http.StatusNoContent)
	}
}

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

func writeEncoded(w http.ResponseWriter, b []byte, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
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

// decodeBody decodes exactly one JSON value into v: unknown fields and
// anything after the value are refused. Routes bound the body with
// bodyLimit.wrap; a body over it is ErrTooLarge.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return nil
	case err == nil:
		return fmt.Errorf("%w: request body: more than one JSON value (send exactly one JSON object)", ErrBadRequest)
	default:
		if errors.Is(err, ErrTooLarge) {
			return err
		}
		return fmt.Errorf("%w: request body: unexpected data after the JSON value (send exactly one JSON object): %v", ErrBadRequest, err)
	}
}

func bodyError(err error) error {
	if errors.Is(err, ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w: request body: %v", ErrBadRequest, err)
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
	if len(req.Processes) == 0 {
		return fmt.Errorf("%w: the application has no process groups (gear-app.conf needs processes { NAME { command = [...] } })", ErrBadRequest)
	}
	seen := map[string]bool{}
	for _, p := range req.Processes {
		switch {
		case p.Name == "" || strings.ContainsAny(p.Name, "./ "):
			return fmt.Errorf("%w: process group name %q must be non-empty without '.', '/' or spaces", ErrBadRequest, p.Name)
		case seen[p.Name]:
			return fmt.Errorf("%w: process group %q is listed twice", ErrBadRequest, p.Name)
		case len(p.Command) == 0:
			return fmt.Errorf("%w: process group %q has no command", ErrBadRequest, p.Name)
		case p.Instances < 0:
			return fmt.Errorf("%w: process group %q: instances must be >= 0, got %d", ErrBadRequest, p.Name, p.Instances)
		case p.CPUs < 0:
			return fmt.Errorf("%w: process group %q: cpus must be >= 0, got %d", ErrBadRequest, p.Name, p.CPUs)
		case p.Restart != "" && p.Restart != "always" && p.Restart != "on-failure" && p.Restart != "never":
			return fmt.Errorf("%w: process group %q: restart must be always, on-failure or never, got %q", ErrBadRequest, p.Name, p.Restart)
		}
		seen[p.Name] = true
	}
	if err := req.Bundle.Kind.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, err := m.blobs.Stat(ctx, req.Bundle.Digest); err != nil {
		return fmt.Errorf("%w: bundle %s is not in the jar store (upload it first with `gear app submit`): %v", ErrBadRequest, req.Bundle.Digest, err)
	}
	return nil
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

func (m *Master) handleScale(w http.ResponseWriter, r *http.Request) {
	var req cluster.ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	lim := m.opts.Limits
	res, err := m.apply(command{Op: opScale, App: r.PathValue("id"), Scale: &req, Limits: &lim})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, map[string]string{"id": res.ID})
}

func (m *Master) handleWorkers(w http.ResponseWriter, r *http.Request) {
	st := m.fsm.snapshotState()
	ws := m.workersView(st, time.Now())
	if ws == nil {
		ws = []cluster.Worker{}
	}
	writeJSON(w, ws)
}

// handleRemoveWorker removes a dead worker from the replicated state; its
// executors become unplaced and are placed elsewhere. A worker heard from
// within the failover timeout is refused unless force=true: it may still
// run them.
func (m *Master) handleRemoveWorker(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	force := false
	if f := r.URL.Query().Get("force"); f != "" {
		b, err := strconv.ParseBool(f)
		if err != nil {
			writeError(w, fmt.Errorf("%w: force=%q is not true or false", ErrBadRequest, f))
			return
		}
		force = b
	}
	known := false
	execs := []string{}
	m.fsm.read(func(s *State) {
		_, known = s.Workers[id]
		for _, app := range s.Apps {
			for _, e := range app.Executors {
				if e.Worker == id {
					execs = append(execs, e.ID)
				}
			}
		}
	})
	if !known {
		writeError(w, fmt.Errorf("%w: %q (see `gear workers`)", ErrNoSuchWorker, id))
		return
	}
	now := time.Now()
	m.mu.Lock()
	last := m.lastSeen[id]
	m.mu.Unlock()
	if !force && !last.IsZero() && now.Sub(last) < m.opts.FailoverTimeout {
		writeError(w, fmt.Errorf("%w: worker %s was heard from %s ago, within gear.failover.timeout (%s): it looks alive, and its %d executor(s) would run twice; stop the worker first and retry once the timeout has passed, or pass -force",
			ErrConflict, id, now.Sub(last).Round(time.Millisecond), m.opts.FailoverTimeout, len(execs)))
		return
	}
	if _, err := m.apply(command{Op: opForget, Forget: []string{id}}); err != nil {
		writeError(w, err)
		return
	}
	m.mu.Lock()
	delete(m.lastSeen, id)
	delete(m.unpooled, id)
	m.mu.Unlock()
	slices.Sort(execs)
	m.log.Info("worker removed", "worker", id, "forced", force, "unplaced", execs)
	writeJSON(w, cluster.RemoveWorkerResult{ID: id, Unplaced: execs})
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
			pr.SetURL(&url.URL{Scheme: "http", Host: target.WorkerAddr})
			pr.Out.URL.Path = "/logs/" + target.ID
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, fmt.Errorf("worker %s (%s) did not answer: %v", target.Worker, target.WorkerAddr, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

func (m *Master) handleMetrics(w http.ResponseWriter, r *http.Request) {
	st := m.fsm.snapshotState()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	isLeader := 0
	if m.isLeader() {
		isLeader = 1
	}
	fmt.Fprintf(w, "# HELP gear_master_leader 1 if this master is the raft leader.\n# TYPE gear_master_leader gauge\ngear_master_leader %d\n", isLeader)
	fmt.Fprintf(w, "# HELP gear_raft_term Current raft term.\n# TYPE gear_raft_term gauge\ngear_raft_term %d\n", m.raft.raft.CurrentTerm())
	states := map[cluster.ExecutorState]int{}
	apps := map[cluster.AppState]int{}
	for _, a := range st.Apps {
		apps[a.State]++
		for _, e := range a.Executors {
			states[e.State]++
		}
	}
	fmt.Fprintf(w, "# HELP gear_apps Applications by state.\n# TYPE gear_apps gauge\n")
	for _, s := range []cluster.AppState{cluster.AppPending, cluster.AppRunning, cluster.AppFailed, cluster.AppKilled} {
		fmt.Fprintf(w, "gear_apps{state=%q} %d\n", s, apps[s])
	}
	fmt.Fprintf(w, "# HELP gear_executors Executors by state.\n# TYPE gear_executors gauge\n")
	for _, s := range []cluster.ExecutorState{cluster.Pending, cluster.Starting, cluster.Running, cluster.Backoff, cluster.Stopping, cluster.Stopped, cluster.Failed, cluster.Lost} {
		fmt.Fprintf(w, "gear_executors{state=%q} %d\n", s, states[s])
	}
	fmt.Fprintf(w, "# HELP gear_workers Workers known to the replicated state.\n# TYPE gear_workers gauge\ngear_workers %d\n", len(st.Workers))
}
