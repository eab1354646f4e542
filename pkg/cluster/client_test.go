package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func answer(status int, body any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func TestClientMovesPastMastersWithoutLeader(t *testing.T) {
	noLeader := httptest.NewServer(answer(503, ErrorBody{Error: "no leader: master a has no quorum"}))
	defer noLeader.Close()
	var hits atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		_ = json.NewEncoder(w).Encode([]App{{ID: "1", Name: "web"}})
	}))
	defer leader.Close()
	c := NewClient([]string{addr(noLeader), "127.0.0.1:1", addr(leader)}, "tok")
	apps, err := c.Apps(context.Background())
	if err != nil || len(apps) != 1 || apps[0].Name != "web" {
		t.Fatalf("apps %v, err %v", apps, err)
	}
	// The master that answered is tried first next time.
	if _, err := c.Apps(context.Background()); err != nil || hits.Load() != 2 {
		t.Fatalf("second call: err %v, leader hits %d", err, hits.Load())
	}
}

func TestClientStopsAtARealAnswer(t *testing.T) {
	var second atomic.Int32
	notFound := httptest.NewServer(answer(404, ErrorBody{Error: "no such application: \"9\""}))
	defer notFound.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { second.Add(1) }))
	defer other.Close()
	c := NewClient([]string{addr(notFound), addr(other)}, "")
	_, err := c.App(context.Background(), "9")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || !strings.Contains(err.Error(), "no such application") {
		t.Fatalf("got %v", err)
	}
	if second.Load() != 0 {
		t.Fatal("a 404 from one master must not be retried on the others")
	}
}

func TestClientNoMasterSaysWhy(t *testing.T) {
	c := NewClient([]string{"127.0.0.1:1"}, "")
	_, err := c.Apps(context.Background())
	if !errors.Is(err, ErrNoMaster) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("got %v", err)
	}
	if _, err := NewClient(nil, "").Apps(context.Background()); err == nil || !strings.Contains(err.Error(), "gear.cluster.masters") {
		t.Fatalf("no masters: %v", err)
	}
}

func TestDeriveState(t *testing.T) {
	cases := []struct {
		name  string
		app   App
		state AppState
	}{
		{"no executors (instances = 0) is running", App{Executors: []Executor{}}, AppRunning},
		{"all running", App{Executors: []Executor{{State: Running}, {State: Running}}}, AppRunning},
		{"one starting", App{Executors: []Executor{{State: Running}, {State: Starting}}}, AppPending},
		{"one failed", App{Executors: []Executor{{State: Running}, {State: Failed}}}, AppFailed},
		{"killed stays killed", App{State: AppKilled, Executors: []Executor{{State: Running}}}, AppKilled},
	}
	for _, tc := range cases {
		if got := tc.app.DeriveState(); got != tc.state {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.state)
		}
	}
}

// Client.Submit gives every submit a request id, and a retry on another
// master carries the same one (so the master applies it once).
func TestSubmitRetryKeepsRequestID(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	h := func(fail bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req SubmitRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			mu.Lock()
			ids = append(ids, req.RequestID)
			mu.Unlock()
			if fail {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"error":"no leader: the leader did not answer"}`))
				return
			}
			_, _ = w.Write([]byte(`{"id":"1"}`))
		}
	}
	a, b := httptest.NewServer(h(true)), httptest.NewServer(h(false))
	defer a.Close()
	defer b.Close()
	c := NewClient([]string{strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://")}, "")
	id, err := c.Submit(context.Background(), SubmitRequest{Name: "web"})
	if err != nil || id != "1" {
		t.Fatalf("submit: %q, %v", id, err)
	}
	if len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("request ids seen by the two masters: %q, want one non-empty id twice", ids)
	}
}
