package worker

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gear-run/gear/pkg/metrics"
)

// workerMetrics are a worker's Prometheus series, on a registry of its
// own (several workers in one process, as in tests, do not collide).
type workerMetrics struct {
	reg       *prometheus.Registry
	api       *metrics.API
	starts    prometheus.Counter
	restarts  prometheus.Counter
	exits     *prometheus.CounterVec
	beats     *prometheus.CounterVec
	beatTimes prometheus.Histogram
}

func newWorkerMetrics(w *Worker) (*workerMetrics, error) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		return nil, err
	}
	wm := &workerMetrics{
		reg: reg,
		api: metrics.NewAPI(reg),
		starts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gear_executor_starts_total", Help: "Executor processes started by this worker (first starts, restarts and replacements).",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gear_executor_restarts_total", Help: "Executor processes started again after they ended on their own (restart policy).",
		}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_executor_exits_total", Help: "Executor process ends by reason: success, failure (non-zero status), signal, unknown (adopted), stopped, replaced, start_failed.",
		}, []string{"reason"}),
		beats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gear_worker_heartbeats_total", Help: "Heartbeats this worker sent, by result (ok or error).",
		}, []string{"result"}),
		beatTimes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gear_worker_heartbeat_duration_seconds", Help: "Round trip of a heartbeat to the leader.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
	}
	reg.MustRegister(wm.starts, wm.restarts, wm.exits, wm.beats, wm.beatTimes, execCollector{w})
	return wm, nil
}

func (w *Worker) handleMetrics(rw http.ResponseWriter, r *http.Request) {
	metrics.Handler(w.metrics.reg).ServeHTTP(rw, r)
}

// execCollector reads each running executor's CPU time and resident
// memory from /proc at scrape time.
type execCollector struct{ w *Worker }

var (
	descExecCPU = prometheus.NewDesc("gear_executor_cpu_seconds_total", "CPU time (user + system) of the executor's current process, from /proc/PID/stat.",
		[]string{"app", "executor"}, nil)
	descExecRSS = prometheus.NewDesc("gear_executor_rss_bytes", "Resident memory of the executor's current process, from /proc/PID/statm.",
		[]string{"app", "executor"}, nil)
	descExecState = prometheus.NewDesc("gear_worker_executors", "Executors on this worker by state.", []string{"state"}, nil)
)

func (c execCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExecCPU
	ch <- descExecRSS
	ch <- descExecState
}

func (c execCollector) Collect(ch chan<- prometheus.Metric) {
	states := map[string]int{}
	for _, e := range c.w.sortedExecs() {
		r := e.report()
		states[string(r.State)]++
		if r.PID <= 0 {
			continue
		}
		u, err := metrics.ReadProc(r.PID)
		if err != nil {
			continue // it just ended
		}
		app := appOf(e.id)
		ch <- prometheus.MustNewConstMetric(descExecCPU, prometheus.CounterValue, u.CPUSeconds, app, e.id)
		ch <- prometheus.MustNewConstMetric(descExecRSS, prometheus.GaugeValue, float64(u.RSSBytes), app, e.id)
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(descExecState, prometheus.GaugeValue, float64(n), s)
	}
}

// appOf is the app id part of an executor id ("<app>.<process>.<index>").
func appOf(id string) string {
	for i := 0; i < len(id); i++ {
		if id[i] == '.' {
			return id[:i]
		}
	}
	return id
}

// heartbeat records one heartbeat sent at start.
func (wm *workerMetrics) heartbeat(start time.Time, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	}
	wm.beats.WithLabelValues(res).Inc()
	wm.beatTimes.Observe(time.Since(start).Seconds())
}
