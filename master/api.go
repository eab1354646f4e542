package master

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
)

const forwardedHeader = "X-Gear-Forwarded-By"

func (m *Master) routes() http.Handler {
	mux := http.NewServeMux()
	// Answered by every master from its own view.
	mux.HandleFunc("GET /api/v1/status", m.handleStatus)
	mux.HandleFunc("GET /api/v1/masters", m.handleMasters)
	mux.HandleFunc("GET /ecv", m.handleECV)
	mux.HandleFunc("POST /ecv/enable", m.auth(m.handleECVToggle(false)))
	mux.HandleFunc("POST /ecv/disable", m.auth(m.handleECVToggle(true)))
	mux.HandleFunc("GET /metrics", m.handleMetrics)
	mux.HandleFunc("GET /api/v1/bundles/{digest}", m.handleGetBundle)
	// Answered by the leader; other masters forward.
	mux.HandleFunc("GET /api/v1/apps", m.lead(m.handleApps))
	mux.HandleFunc("GET /api/v1/apps/{id}", m.lead(m.handleApp))
	mux.HandleFunc("POST /api/v1/apps", m.auth(m.lead(m.handleSubmit)))
	mux.HandleFunc("POST /api/v1/apps/{id}/kill", m.auth(m.lead(m.handleKill)))
	mux.HandleFunc("POST /api/v1/apps/{id}/restart", m.auth(m.lead(m.handleRestart)))
	mux.HandleFunc("POST /api/v1/apps/{id}/scale", m.auth(m.lead(m.handleScale)))
	mux.HandleFunc("GET /api/v1/apps/{id}/logs", m.lead(m.handleLogs))
	mux.HandleFunc("GET /api/v1/workers", m.lead(m.handleWorkers))
	mux.HandleFunc("POST /api/v1/workers/heartbeat", m.auth(m.lead(m.handleHeartbeat)))
	mux.HandleFunc("POST /api/v1/bundles", m.auth(m.lead(m.handleUpload)))
	mux.HandleFunc("GET /api/v1/bundles", m.lead(m.handleListBundles))
	mux.HandleFunc("POST /api/v1/jarstore/gc", m.auth(m.lead(m.handleGC)))
	mux.HandleFunc("/", m.handleDashboard)
	return mux
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
	case errors.Is(err, ErrNoSuchApp), errors.Is(err, jarstore.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrBadRequest), errors.Is(err, jarstore.ErrTooLarge), errors.Is(err, jarstore.ErrDigestMismatch), errors.Is(err, jarstore.ErrInvalidDigest):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrNoLeader):
		status = http.StatusServiceUnavailable
	case errors.Is(err, jarstore.ErrNoSpace):
		status = http.StatusInsufficientStorage
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
// forwardTransport carries requests a follower forwards to the leader. A
// leader whose machine is gone answers nothing: a fresh connection per
// request with a short dial timeout turns that into a quick "no leader"
// (the client retries, by then on the new leader), where a kept-alive
// connection or the default 30 s dial would hang the request.
var forwardTransport = &http.Transport{
	DialContext:       (&net.Dialer{Timeout: 500 * time.Millisecond}).DialContext,
	DisableKeepAlives: true,
}

func (m *Master) lead(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m.isLeader() {
			h(w, r)
			return
		}
		leader := m.leader()
		if leader == "" || leader == m.self || r.Header.Get(forwardedHeader) != "" {
			writeError(w, fmt.Errorf("%w: %s", ErrNoLeader, m.quorumReport()))
			return
		}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(&url.URL{Scheme: "http", Host: leader})
				pr.Out.Header.Set(forwardedHeader, m.self)
			},
			FlushInterval: -1,
			Transport:     forwardTransport,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
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
}

func (m *Master) status() status {
	r := m.raft.raft
	st := status{
		Addr: m.self, State: strings.ToLower(r.State().String()), Term: r.CurrentTerm(),
		Leader: m.leader(), CommitIndex: r.CommitIndex(), Voters: m.raft.voters(), Boot: m.boot,
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
	views := make([]cluster.Master, len(voters))
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 500 * time.Millisecond}
	for i, v := range voters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i] = cluster.Master{Addr: v, State: "unreachable"}
			var st status
			if v == m.self {
				st = m.status()
			} else if err := getJSON(r.Context(), client, "http://"+v+"/api/v1/status", &st); err != nil {
				views[i].Error = err.Error()
				return
			}
			views[i] = cluster.Master{Addr: v, State: st.State, Term: st.Term, LastContact: st.LastContact, Leader: st.Leader, CommitIndex: st.CommitIndex}
		}()
	}
	wg.Wait()
	// The group has quorum when a majority answers and agrees on a leader
	// that itself answers as leader.
	leaders := map[string]int{}
	for _, v := range views {
		if v.State != "unreachable" && v.Leader != "" {
			leaders[v.Leader]++
		}
	}
	quorum := false
	for l, n := range leaders {
		for _, v := range views {
			if v.Addr == l && v.State == "leader" && n >= len(voters)/2+1 {
				quorum = true
			}
		}
	}
	for i := range views {
		views[i].Quorum = quorum
		if g, ok := m.pool.Member("master@" + views[i].Addr); ok {
			views[i].Gossip, views[i].GossipSince = g.State, g.Since.UTC()
		}
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

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", ErrBadRequest, err)
	}
	return nil
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
	res, err := m.apply(command{Op: opSubmit, Submit: &req})
	if err != nil {
		writeError(w, err)
		return
	}
	m.log.Info("application submitted", "app", res.ID, "name", req.Name, "bundle", req.Bundle.Digest)
	writeJSON(w, map[string]string{"id": res.ID})
}

func (m *Master) validateSubmit(ctx context.Context, req *cluster.SubmitRequest) error {
	if req.Name == "" {
		return fmt.Errorf("%w: the application has no name (set name in gear-app.conf or pass -name)", ErrBadRequest)
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
		case p.Instances < 0 || p.Instances > 10000:
			return fmt.Errorf("%w: process group %q: instances must be 0..10000, got %d", ErrBadRequest, p.Name, p.Instances)
		case p.CPUs < 0:
			return fmt.Errorf("%w: process group %q: cpus must be >= 0, got %d", ErrBadRequest, p.Name, p.CPUs)
		case p.Restart != "" && p.Restart != "always" && p.Restart != "on-failure" && p.Restart != "never":
			return fmt.Errorf("%w: process group %q: restart must be always, on-failure or never, got %q", ErrBadRequest, p.Name, p.Restart)
		}
		seen[p.Name] = true
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
	res, err := m.apply(command{Op: opScale, App: r.PathValue("id"), Scale: &req})
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
