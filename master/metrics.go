package master

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/metrics"
)

// masterMetrics are a master's Prometheus series, on a registry of its
// own (several masters in one process do not collide; see pkg/metrics for
// raft's and memberlist's series, which are per process).
type masterMetrics struct {
	reg           *prometheus.Registry
	api           *metrics.API
	leaderChanges prometheus.Counter
	failover      prometheus.Histogram
	heartbeats    *prometheus.CounterVec
	// heartbeatBytes: the body bytes of the heartbeats it handled
	// (received) and of its replies (sent), for the traffic per worker.
	heartbeatBytes *prometheus.CounterVec
	jarBytes       *prometheus.CounterVec
	jarLatency     *prometheus.HistogramVec
}

func newMasterMetrics(m *Master) (*masterMetrics, error) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		return nil, err
	}
	mm := &masterMetrics{
		reg: reg,
		api: metrics.NewAPI(reg),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gear_leader_changes_total", Help: "Times this master learnt of a new raft leader (including the first).",
		}),
		failover: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gear_failover_duration_seconds", Help: "Time from losing the leader to knowing the next one, as this master saw it.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 12, 15, 20, 30, 60},
		}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_heartbeats_total", Help: "Worker heartbeats handled by this master as leader, by result (ok or the HTTP status class of the refusal).",
		}, []string{"result"}),
		heartbeatBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_heartbeat_bytes_total", Help: "Body bytes of the worker heartbeats this master handled as leader (received) and of its replies (sent).",
		}, []string{"direction"}),
		jarBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_jarstore_bytes_total", Help: "Bytes written to (put) and served from (get) the jar store through this master.",
		}, []string{"op"}),
		jarLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gear_jarstore_duration_seconds", Help: "Time to store (put) or serve (get) one bundle, by result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"op", "result"}),
	}
	reg.MustRegister(mm.leaderChanges, mm.failover, mm.heartbeats, mm.heartbeatBytes, mm.jarBytes, mm.jarLatency, stateCollector{m})
	return mm, nil
}

// jar records one jar store operation.
func (mm *masterMetrics) jar(op string, n int64, start time.Time, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	}
	mm.jarBytes.WithLabelValues(op).Add(float64(n))
	mm.jarLatency.WithLabelValues(op, res).Observe(time.Since(start).Seconds())
}

// countHeartbeat counts the heartbeats h answers.
func (m *Master) countHeartbeat(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		body := &countingReader{r: r.Body}
		r.Body = body
		h(sw, r)
		res := "ok"
		if sw.code >= 300 {
			res = strconv.Itoa(sw.code/100) + "xx"
		}
		m.metrics.heartbeats.WithLabelValues(res).Inc()
		m.metrics.heartbeatBytes.WithLabelValues("received").Add(float64(body.n))
		m.metrics.heartbeatBytes.WithLabelValues("sent").Add(float64(sw.n))
	}
}

// codeWriter remembers the status code and counts the body bytes written.
type codeWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *codeWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

func (w *codeWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// countingReader counts the bytes read through it (a request body).
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

func (m *Master) handleMetrics(w http.ResponseWriter, r *http.Request) {
	metrics.Handler(m.metrics.reg).ServeHTTP(w, r)
}

// stateCollector reads the gauges of the replicated state at scrape time.
type stateCollector struct{ m *Master }

var (
	descLeader    = prometheus.NewDesc("gear_master_leader", "1 if this master is the raft leader.", nil, nil)
	descTerm      = prometheus.NewDesc("gear_raft_term", "Current raft term.", nil, nil)
	descApps      = prometheus.NewDesc("gear_apps", "Applications by state.", []string{"state"}, nil)
	descExecutors = prometheus.NewDesc("gear_executors", "Executors by state.", []string{"state"}, nil)
	descWorkers   = prometheus.NewDesc("gear_workers", "Workers known to the replicated state.", nil, nil)
	descApplied   = prometheus.NewDesc("gear_raft_applied_index", "Last raft index this master applied to its state.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descTerm, descApps, descExecutors, descWorkers, descApplied} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	if m.raft == nil {
		return
	}
	leader := 0.0
	if m.isLeader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(m.raft.raft.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(m.raft.raft.AppliedIndex()))
	states := map[cluster.ExecutorState]int{}
	apps := map[cluster.AppState]int{}
	workers := 0
	m.fsm.read(func(s *State) {
		workers = len(s.Workers)
		for _, a := range s.Apps {
			apps[a.State]++
			for _, e := range a.Executors {
				states[e.State]++
			}
		}
	})
	for _, s := range []cluster.AppState{cluster.AppPending, cluster.AppRunning, cluster.AppFailed, cluster.AppKilled} {
		ch <- prometheus.MustNewConstMetric(descApps, prometheus.GaugeValue, float64(apps[s]), string(s))
	}
	for _, s := range []cluster.ExecutorState{cluster.Pending, cluster.Starting, cluster.Running, cluster.Backoff, cluster.Stopping, cluster.Stopped, cluster.Failed, cluster.Lost} {
		ch <- prometheus.MustNewConstMetric(descExecutors, prometheus.GaugeValue, float64(states[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(workers))
}
