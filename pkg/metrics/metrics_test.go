package metrics

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReadProcSelf(t *testing.T) {
	u, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSSBytes < 1<<20 || u.CPUSeconds < 0 {
		t.Fatalf("this test process: %+v, want an RSS of at least 1 MiB", u)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("no error for a pid that does not exist")
	}
}

// Two daemons in one process get registries of their own that both
// collect the go-metrics sink (installed once).
func TestRegistriesPerDaemon(t *testing.T) {
	a, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	NewAPI(a)
	NewAPI(b) // the same names on another registry: no collision
	for _, reg := range []*prometheus.Registry{a, b} {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, f := range fams {
			names[f.GetName()] = true
		}
		if !names["go_goroutines"] || !names["process_resident_memory_bytes"] {
			t.Fatalf("missing the standard collectors: %v", names)
		}
	}
}

func TestAPICountsByPattern(t *testing.T) {
	reg := prometheus.NewRegistry()
	api := NewAPI(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /apps/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "x" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		w.(http.Flusher).Flush() // streams keep flushing through the wrapper
	})
	h := api.Wrap(mux)
	for _, p := range []string{"/apps/1", "/apps/2", "/apps/x", "/nope"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	want := `
# HELP gear_api_requests_total HTTP API requests by route pattern and status code.
# TYPE gear_api_requests_total counter
gear_api_requests_total{code="200",route="GET /apps/{id}"} 2
gear_api_requests_total{code="404",route="GET /apps/{id}"} 1
gear_api_requests_total{code="404",route="unmatched"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gear_api_requests_total"); err != nil {
		t.Fatal(err)
	}
}
