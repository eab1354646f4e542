package worker

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWorkerRoutesNeedToken walks every route of the worker's HTTP: only
// /ecv answers without the cluster token; the others (executor logs, the
// executor list) answer 401 before their handler runs.
func TestWorkerRoutesNeedToken(t *testing.T) {
	w := &Worker{opts: Options{Token: "s3cret"}, id: "w1"}
	mux := w.serveMux()
	for _, rt := range w.routeTable() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.ReplaceAll(path, "{id}", "1-web-0")
		if rt.open != strings.HasPrefix(rt.pattern, "GET /ecv") {
			t.Errorf("%s: open=%v; only GET /ecv and /ecv/{executor} may skip the token", rt.pattern, rt.open)
		}
		if rt.open {
			continue
		}
		for _, hdr := range []string{"", "Bearer nope"} {
			req := httptest.NewRequest(method, path, nil)
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			if _, got := mux.Handler(req); got != rt.pattern {
				t.Fatalf("%s served by %q", rt.pattern, got)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "GEAR_TOKEN") {
				t.Errorf("%s with %q: %d %s, want 401 naming GEAR_TOKEN", rt.pattern, hdr, rec.Code, rec.Body)
			}
		}
	}
	w.health.connected.Store(true)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ecv", nil))
	if rec.Code != 200 {
		t.Fatalf("/ecv without token: %d", rec.Code)
	}
}
