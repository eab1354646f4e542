// Package metrics holds what masters and workers share to expose
// Prometheus metrics: a registry per daemon with the standard go_ and
// process_ collectors, the process-wide sink through which raft and
// memberlist report their own metrics (hashicorp/go-metrics), an HTTP
// middleware that counts API requests by route and code, and a reader of
// /proc for per-executor CPU and memory.
//
// It holds no daemon logic: each daemon declares its own series on the
// registry it gets from NewRegistry and serves it with Handler.
//
// # raft and memberlist
//
// hashicorp/raft and hashicorp/memberlist report through go-metrics'
// global instance, which exists once per process. GlobalSink installs a
// Prometheus sink there once (the first call wins; later calls return the
// same sink) and every daemon's registry collects from it. So in a process
// that runs several daemons (`gear local`, tests) each daemon's /metrics
// shows the raft_ and memberlist_ series of all of them together; the
// daemons started by bin/master and bin/worker run one per process, where
// the series are their own. The series are named after go-metrics' keys
// without a service prefix (raft_apply, memberlist_gossip, ...), and one
// that is not updated for a minute is dropped until it is updated again.
package metrics

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	sinkOnce sync.Once
	sink     *gmprom.PrometheusSink
	sinkErr  error
)

// GlobalSink installs, once per process, the Prometheus sink as
// go-metrics' global sink, and returns it. It is a prometheus.Collector:
// NewRegistry registers it with every daemon's registry.
func GlobalSink() (*gmprom.PrometheusSink, error) {
	sinkOnce.Do(func() {
		// The sink registers itself with a registry of its own; the
		// daemons' registries collect from it too.
		sink, sinkErr = gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Expiration: time.Minute, Registerer: prometheus.NewRegistry(), Name: "gear_gometrics_sink",
		})
		if sinkErr != nil {
			sinkErr = fmt.Errorf("metrics: create the go-metrics Prometheus sink: %w", sinkErr)
			return
		}
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableServiceLabel = false
		cfg.EnableRuntimeMetrics = false // the go_ collector has them
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			sinkErr = fmt.Errorf("metrics: install the go-metrics global sink: %w", err)
		}
	})
	return sink, sinkErr
}

// NewRegistry returns a registry for one daemon with the go_ and process_
// collectors and the go-metrics sink (raft_, memberlist_) registered.
func NewRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := GlobalSink()
	if err != nil {
		return nil, err
	}
	if err := reg.Register(s); err != nil {
		return nil, fmt.Errorf("metrics: register the go-metrics sink: %w", err)
	}
	return reg, nil
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// API counts HTTP requests by route pattern and status code and times
// them. Create it with NewAPI and wrap the daemon's mux with Wrap.
type API struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewAPI registers gear_api_requests_total and
// gear_api_request_duration_seconds with reg.
func NewAPI(reg prometheus.Registerer) *API {
	a := &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_api_requests_total", Help: "HTTP API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gear_api_request_duration_seconds", Help: "HTTP API request latency by route pattern (streams count until they end).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
	}
	reg.MustRegister(a.requests, a.latency)
	return a
}

// Wrap instruments mux. The route label is the pattern the mux matched
// ("GET /api/v1/apps/{id}"), so ids do not multiply the series.
func (a *API) Wrap(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(rw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		a.requests.WithLabelValues(route, strconv.Itoa(rw.code)).Inc()
		a.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusWriter records the status code and keeps Flush working (streams,
// the proxy to the leader).
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	w.wrote = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times; 100 on every
// Linux architecture gear runs on.
const clockTicks = 100

// ProcUsage is one process's CPU time and resident memory from /proc.
type ProcUsage struct {
	CPUSeconds float64 // user + system
	RSSBytes   int64
}

// ReadProc reads /proc/PID/stat and /proc/PID/statm.
func ReadProc(pid int) (ProcUsage, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcUsage{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcUsage{}, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return ProcUsage{}, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ProcUsage{}, fmt.Errorf("/proc/%d/stat: utime %q, stime %q are not numbers", pid, f[11], f[12])
	}
	u := ProcUsage{CPUSeconds: float64(ut+st) / clockTicks}
	b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return ProcUsage{}, err
	}
	m := strings.Fields(string(b))
	if len(m) < 2 {
		return ProcUsage{}, fmt.Errorf("/proc/%d/statm: %q has no resident field", pid, string(b))
	}
	pages, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return ProcUsage{}, fmt.Errorf("/proc/%d/statm: resident %q is not a number", pid, m[1])
	}
	u.RSSBytes = pages * int64(os.Getpagesize())
	return u, nil
}
