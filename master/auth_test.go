package master

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// openRoutes are the only routes that answer without the cluster token.
// Adding one here is a decision the README and gear.conf must document.
var openRoutes = map[string]bool{
	"GET /ecv": true, // load balancers poll it
	"GET /{$}": true, // the dashboard page; its data calls need the token
	"GET /ui/": true, // the dashboard's static scripts and styles
}

// requestFor builds a request that the route's pattern matches.
func requestFor(t *testing.T, pattern string) *http.Request {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		t.Fatalf("route %q has no method: every route names its method", pattern)
	}
	path = strings.NewReplacer("{$}", "", "{id}", "1", "{digest}", "sha256:"+strings.Repeat("0", 64)).Replace(path)
	if strings.Contains(path, "{") {
		t.Fatalf("route %q: teach requestFor its path parameter", pattern)
	}
	return httptest.NewRequest(method, path, strings.NewReader(`{}`))
}

// TestEveryRouteNeedsToken walks every registered route: without the token,
// or with a wrong one, each answers 401 before its handler runs (the
// Master here has no raft, no store: a handler that ran would panic), and
// says how to pass the token. Only openRoutes (and /metrics with
// gear.metrics.open) answer without it.
func TestEveryRouteNeedsToken(t *testing.T) {
	for _, metricsOpen := range []bool{false, true} {
		m := &Master{opts: Options{Token: "s3cret", MetricsOpen: metricsOpen}}
		mux := m.serveMux()
		for _, rt := range m.routeTable() {
			wantOpen := openRoutes[rt.pattern] || (metricsOpen && rt.pattern == "GET /metrics")
			req := requestFor(t, rt.pattern)
			if _, got := mux.Handler(req); got != rt.pattern {
				t.Fatalf("%s is served by %q, not its own route", rt.pattern, got)
			}
			isOpen := rt.access == open || (rt.access == openIfMetrics && metricsOpen)
			if isOpen != wantOpen {
				t.Errorf("%s (metrics.open=%v): open=%v, want %v: only /ecv, the dashboard page and /metrics with gear.metrics.open may skip the token",
					rt.pattern, metricsOpen, isOpen, wantOpen)
				continue
			}
			if wantOpen {
				continue
			}
			for _, hdr := range []string{"", "Bearer wrong", "Bearer s3cre", "Bearer s3cretX", "s3cret", "Basic s3cret"} {
				req := requestFor(t, rt.pattern)
				if hdr != "" {
					req.Header.Set("Authorization", hdr)
				}
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("%s with Authorization %q: %d %s, want 401", rt.pattern, hdr, rec.Code, rec.Body)
					continue
				}
				for _, hint := range []string{"-token", "GEAR_TOKEN", "gear.auth.token", "Authorization: Bearer"} {
					if !strings.Contains(rec.Body.String(), hint) {
						t.Errorf("%s: the 401 does not say how to pass the token (no %q): %s", rt.pattern, hint, rec.Body)
					}
				}
			}
		}
	}
}

// TestUnknownPathNeedsToken: a path no route matches gives an
// unauthenticated caller the same 401, and an authenticated one a 404.
func TestUnknownPathNeedsToken(t *testing.T) {
	m := &Master{opts: Options{Token: "s3cret"}}
	h := m.serveMux()
	for _, p := range []string{"/api/v1/secret", "/dashboard.js", "/api/v2/apps"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without token: %d, want 401", p, rec.Code)
		}
		req := httptest.NewRequest("GET", p, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s with token: %d, want 404", p, rec.Code)
		}
	}
}

// TestNoTokenConfiguredIsOpen: without gear.auth.token nothing is checked.
func TestNoTokenConfiguredIsOpen(t *testing.T) {
	m := &Master{opts: Options{}}
	rec := httptest.NewRecorder()
	m.serveMux().ServeHTTP(rec, httptest.NewRequest("GET", "/nothing", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /nothing without a cluster token configured: %d, want 404", rec.Code)
	}
}
