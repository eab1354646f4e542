package master

import (
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
	jarBytes      *prometheus.CounterVec
	jarLatency    *prometheus.HistogramVec
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
		jarBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_jarstore_bytes_total", Help: "Bytes written to (put) and served from (get) the jar store through this master.",
		}, []string{"op"}),
		jarLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gear_jarstore_duration_seconds", Help: "Time to store (put) or serve (get) one bundle, by result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"op", "result"}),
	}
	reg.MustRegister(mm.leaderChanges, mm.failover, mm.heartbeats, mm.jarBytes, mm.jarLatency, stateCollector{m})
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
		h(sw, r)
		res := "ok"
		if sw.code >= 300 {
			res = strconv.Itoa(sw.code/100) + "xx"
		}
		m.metrics.heartbeats.WithLabelValues(res).Inc()
	}
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

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
