package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// A refused connection and a DNS error are final: a client with a long
// Retry still fails at once and names every address it tried.
func TestClientFailsFastWhenNothingAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cases := []struct {
		name    string
		masters []string
		want    []string
	}{
		{"closed port", []string{closed}, []string{closed, "connection refused"}},
		{"unresolvable name", []string{"nonexistent.invalid:3000"}, []string{"nonexistent.invalid:3000", "no such host"}},
		{"both", []string{closed, "nonexistent.invalid:3000"}, []string{closed, "nonexistent.invalid:3000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(tc.masters, "")
			c.Retry = time.Minute
			c.Source = "-master flag"
			var waits atomic.Int32
			c.OnWait = func(time.Duration, time.Duration, string) { waits.Add(1) }
			start := time.Now()
			_, err := c.Apps(context.Background())
			took := time.Since(start)
			if !errors.Is(err, ErrNoMaster) {
				t.Fatalf("got %v, want ErrNoMaster", err)
			}
			for _, w := range append(tc.want, "-master flag") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if waits.Load() != 0 {
				t.Errorf("waited %d times for an error that waiting cannot fix", waits.Load())
			}
			// Generous for a loaded machine; without the fix this is a minute.
			if took > 5*time.Second {
				t.Errorf("took %s to fail", took)
			}
		})
	}
}

// A master without a leader is waited for, within Retry, and the wait is
// reported through OnWait; a leader that appears ends the wait.
func TestClientWaitsForALeader(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(503)
			_ = json.NewEncoder(w).Encode(ErrorBody{Error: "no leader"})
			return
		}
		_ = json.NewEncoder(w).Encode([]App{})
	}))
	defer srv.Close()
	c := NewClient([]string{addr(srv)}, "")
	c.Retry = time.Minute
	var waits atomic.Int32
	c.OnWait = func(waited, limit time.Duration, why string) {
		if limit != time.Minute || !strings.Contains(why, "no leader") {
			t.Errorf("OnWait(%s, %s, %q)", waited, limit, why)
		}
		if waits.Add(1) == 3 {
			ready.Store(true)
		}
	}
	if _, err := c.Apps(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waits.Load() != 3 {
		t.Fatalf("waited %d times, want 3", waits.Load())
	}

	// Without a leader ever, the wait ends at Retry with the last answers.
	ready.Store(false)
	c.Retry = 300 * time.Millisecond
	c.OnWait = nil
	start := time.Now()
	_, err := c.Apps(context.Background())
	if !errors.Is(err, ErrNoMaster) || !strings.Contains(err.Error(), "503: no leader") {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("gave up after %s, before Retry", took)
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 503}, true},
		{&APIError{Status: 502}, true},
		{&APIError{Status: 404}, false},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, false},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, false},
		{os.ErrDeadlineExceeded, true},
		{io.ErrUnexpectedEOF, true},
	}
	for _, tc := range cases {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
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
