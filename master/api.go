package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

const forwardedHeader = "X-Gear-Forwarded-By"

// access says who may call a route.
type access int

const (
	// needToken: with gear.auth.token set, the route answers only a
	// request that carries it. Every route is this unless listed open.
	needToken access = iota
	// open: load balancers poll it (/ecv) or a browser loads it (the
	// dashboard page, whose data calls need the token).
	open
	// openIfMetrics: open when gear.metrics.open is true.
	openIfMetrics
)

// route is one entry of the API. Every route is registered through
// routeTable and routes(), which wraps it in auth unless its access says
// otherwise, so a new route is guarded unless it is listed open on purpose
// (TestEveryRouteNeedsToken walks the table).
type route struct {
	pattern string
	access  access
	h       http.HandlerFunc
}

func (m *Master) routeTable() []route {
	js := m.jsonLimit()
	return []route{
		// Answered by every master from its own view.
		{"GET /api/v1/status", needToken, m.handleStatus},
		{"GET /api/v1/masters", needToken, m.handleMasters},
		{"GET /ecv", open, m.handleECV},
		{"POST /ecv/enable", needToken, js.wrap(m.handleECVToggle(false))},
		{"POST /ecv/disable", needToken, js.wrap(m.handleECVToggle(true))},
		{"GET /metrics", openIfMetrics, m.handleMetrics},
		{"GET /api/v1/bundles/{digest}", needToken, m.handleGetBundle},
		{"GET /api/v1/events", needToken, m.handleEvents},
		// Answered by the leader; other masters forward (with the
		// caller's Authorization header). Bodies over their limit are
		// refused before anything is forwarded.
		{"GET /api/v1/apps", needToken, m.lead(m.confirmed(m.handleApps))},
		{"GET /api/v1/apps/{id}", needToken, m.lead(m.confirmed(m.handleApp))},
		{"POST /api/v1/apps", needToken, js.wrap(m.lead(m.handleSubmit))},
		{"POST /api/v1/apps/{id}/kill", needToken, js.wrap(m.lead(m.handleKill))},
		{"POST /api/v1/apps/{id}/restart", needToken, js.wrap(m.lead(m.handleRestart))},
		{"POST /api/v1/apps/{id}/disable", needToken, js.wrap(m.lead(m.handleDisable(true)))},
		{"POST /api/v1/apps/{id}/enable", needToken, js.wrap(m.lead(m.handleDisable(false)))},
		{"POST /api/v1/apps/{id}/scale", needToken, js.wrap(m.lead(m.handleScale))},
		{"POST /api/v1/apps/{id}/update", needToken, js.wrap(m.lead(m.handleUpdate))},
		{"POST /api/v1/apps/{id}/rollback", needToken, js.wrap(m.lead(m.handleRollback))},
		{"GET /api/v1/apps/{id}/logs", needToken, m.lead(m.handleLogs)},
		{"GET /api/v1/workers", needToken, m.lead(m.confirmed(m.handleWorkers))},
		{"POST /api/v1/workers/heartbeat", needToken, js.wrap(m.nodeOnly(m.lead(m.countHeartbeat(m.handleHeartbeat))))},
		// Not forwarded: a worker waits on the leader itself.
		{"GET /api/v1/workers/{id}/assignments/wait", needToken, m.nodeOnly(m.handleDoorbell)},
		{"POST /api/v1/workers/{id}/remove", needToken, js.wrap(m.lead(m.handleRemoveWorker))},
		{"POST /api/v1/workers/{id}/drain", needToken, js.wrap(m.lead(m.handleDrain))},
		{"POST /api/v1/workers/{id}/eligible", needToken, js.wrap(m.lead(m.handleEligible))},
		{"POST /api/v1/bundles", needToken, m.bundleLimit().wrap(m.lead(m.handleUpload))},
		{"GET /api/v1/bundles", needToken, m.lead(m.handleListBundles)},
		{"POST /api/v1/jarstore/gc", needToken, js.wrap(m.lead(m.handleGC))},
		{"POST /api/v1/masters/add", needToken, js.wrap(m.lead(m.handleAddMaster))},
		{"POST /api/v1/masters/remove", needToken, js.wrap(m.lead(m.handleRemoveMaster))},
		// The state holds worker secrets' hashes: saving needs the token too.
		{"GET /api/v1/snapshot", needToken, m.lead(m.handleSnapshotSave)},
		{"POST /api/v1/snapshot/restore", needToken, bodyLimit{max: maxSnapshotBody, what: "the snapshot restore limit"}.wrap(m.lead(m.handleSnapshotRestore))},
		// The dashboard page and its static assets; its data calls above
		// need the token.
		{"GET /{$}", open, m.handleDashboard},
		{"GET /ui/", open, m.handleDashboardAsset},
	}
}

// routes is the master's HTTP handler: every route, counted by the API
// metrics.
func (m *Master) routes() http.Handler { return m.metrics.api.Wrap(m.serveMux()) }

// serveMux registers every route of routeTable, each behind the token
// check its access calls for.
func (m *Master) serveMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range m.routeTable() {
		mux.HandleFunc(rt.pattern, m.guard(rt))
	}
	// Anything else: 404 as JSON, after the token check so that an
	// unauthenticated caller learns nothing about which paths exist.
	mux.HandleFunc("/", m.auth(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(cluster.ErrorBody{Error: fmt.Sprintf("no API route %s %s (see the README for the API)", r.Method, r.URL.Path)})
	}))
	return mux
}

// guard wraps a route in the token check its access calls for.
func (m *Master) guard(rt route) http.HandlerFunc {
	switch rt.access {
	case open:
		return rt.h
	case openIfMetrics:
		if m.opts.MetricsOpen {
			return rt.h
		}
	}
	return m.auth(rt.h)
}

// auth refuses a request without the cluster token (when one is set)
// before anything runs: a refused call changes nothing.
func (m *Master) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := cluster.CheckToken(r, m.opts.Token); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gear"`)
			writeError(w, fmt.Errorf("%w: %v", ErrUnauthorized, err))
			return
		}
		h(w, r)
	}
}

// lead runs h on the leader and forwards the request to it from any other
// master, streaming bodies both ways, on the forwarder's kept-alive
// connections (forward.go).
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
				pr.SetURL(&url.URL{Scheme: m.scheme(), Host: leader})
				pr.Out.Header.Set(forwardedHeader, m.self)
			},
			FlushInterval: -1,
			Transport:     m.forwarder(),
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
	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: m.peerTransport()}
	for i, mem := range all {
		v := mem.Addr
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i] = cluster.Master{Addr: v, State: "unreachable", Suffrage: mem.Suffrage}
			var st status
			if v == m.self {
				st = m.status()
			} else if err := getJSON(r.Context(), client, m.scheme()+"://"+v+"/api/v1/status", m.opts.Token, &st); err != nil {
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
		if g, ok := m.pool.Member("master@" + views[i].Addr); ok {
			views[i].Gossip, views[i].GossipSince = g.State, g.Since.UTC()
		}
	}
	writeJSON(w, views)
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
