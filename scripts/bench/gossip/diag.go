package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// diag is what explains a slow or unstable pool: memberlist's own log lines
// (counted, not printed), the kernel's UDP drop counters, the Go
// scheduler's run-queue latency and the process's CPU, over one phase of
// the bench (the join, the idle window, ...).
type diag struct {
	Suspects      int64   `json:"suspects"`       // "Suspect X has failed": a member's probe got no ack
	Deaths        int64   `json:"deaths"`         // "Marking X as failed": a suspicion timed out
	RefuteSuspect int64   `json:"refute_suspect"` // a member heard it was suspected and refuted
	RefuteDead    int64   `json:"refute_dead"`    // a member heard it was declared dead and refuted
	QueueDrops    int64   `json:"queue_drops"`    // memberlist's handler queue was full
	PushPullFail  int64   `json:"pushpull_fail"`  // a push/pull or its stream failed
	UDPDrops      int64   `json:"udp_drops"`      // kernel: UDP RcvbufErrors (machine-wide)
	SchedP99      float64 `json:"sched_p99_s"`    // goroutine wait for a P, 99th percentile
	SchedMax      float64 `json:"sched_max_s"`    // and the highest bucket seen
	CPU           float64 `json:"cpu_cores"`      // process CPU over the phase, in cores
	Secs          float64 `json:"secs"`
}

func (d diag) String() string {
	return fmt.Sprintf("%.0fs: probe failures (suspect) %d, suspicion timeouts (dead) %d, refuted suspect %d / dead %d, handler queue drops %d, push/pull failures %d, kernel UDP rcvbuf drops %d, scheduler latency p99 %s max %s, CPU %.2f cores",
		d.Secs, d.Suspects, d.Deaths, d.RefuteSuspect, d.RefuteDead, d.QueueDrops, d.PushPullFail, d.UDPDrops, dur(d.SchedP99), dur(d.SchedMax), d.CPU)
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// counters of memberlist log lines, over all members of this process.
var logCount struct {
	suspect, dead, refSuspect, refDead, drops, pushpull atomic.Int64
	watched                                             atomic.Int64 // suspicions of watchName
}

// watchName is the member whose suspicions countLog counts in watched.
var watchName atomic.Value

// countLog is every member's memberlist logger: it counts the lines that
// matter and discards them.
type countLog struct{}

func (countLog) Write(b []byte) (int, error) {
	s := string(b)
	switch {
	case strings.Contains(s, "memberlist: Suspect "):
		logCount.suspect.Add(1)
		if name, _ := watchName.Load().(string); name != "" && strings.Contains(s, "Suspect "+name+" ") {
			logCount.watched.Add(1)
		}
	case strings.Contains(s, "memberlist: Marking "):
		logCount.dead.Add(1)
	case strings.Contains(s, "Refuting a suspect"):
		logCount.refSuspect.Add(1)
	case strings.Contains(s, "Refuting a dead"):
		logCount.refDead.Add(1)
	case strings.Contains(s, "queue full"):
		logCount.drops.Add(1)
	case strings.Contains(s, "[ERR]") && (strings.Contains(s, "Push/Pull") || strings.Contains(s, "push/pull") || strings.Contains(s, "remote state")):
		logCount.pushpull.Add(1)
	}
	return len(b), nil
}

// snap is the counters at one moment; diagSince subtracts two.
type snap struct {
	at    time.Time
	cpu   time.Duration
	c     [6]int64
	udp   int64
	sched *metrics.Float64Histogram
}

func takeSnap() snap {
	s := snap{at: time.Now(), cpu: cpuTime(), udp: udpRcvbufErrors()}
	s.c = [6]int64{logCount.suspect.Load(), logCount.dead.Load(), logCount.refSuspect.Load(), logCount.refDead.Load(), logCount.drops.Load(), logCount.pushpull.Load()}
	m := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(m)
	if m[0].Value.Kind() == metrics.KindFloat64Histogram {
		s.sched = m[0].Value.Float64Histogram()
	}
	return s
}

func diagSince(a snap) diag {
	b := takeSnap()
	d := diag{
		Suspects: b.c[0] - a.c[0], Deaths: b.c[1] - a.c[1], RefuteSuspect: b.c[2] - a.c[2],
		RefuteDead: b.c[3] - a.c[3], QueueDrops: b.c[4] - a.c[4], PushPullFail: b.c[5] - a.c[5],
		UDPDrops: b.udp - a.udp, Secs: b.at.Sub(a.at).Seconds(),
	}
	d.CPU = (b.cpu - a.cpu).Seconds() / d.Secs
	if a.sched != nil && b.sched != nil && len(a.sched.Counts) == len(b.sched.Counts) {
		var total uint64
		counts := make([]uint64, len(b.sched.Counts))
		for i := range counts {
			counts[i] = b.sched.Counts[i] - a.sched.Counts[i]
			total += counts[i]
		}
		var seen uint64
		for i, c := range counts {
			if c == 0 {
				continue
			}
			seen += c
			// Buckets[i] is the lower bound of bucket i.
			if d.SchedP99 == 0 && seen*100 >= total*99 {
				d.SchedP99 = b.sched.Buckets[i]
			}
			d.SchedMax = b.sched.Buckets[i]
		}
	}
	return d
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped because a
// socket's receive buffer was full (/proc/net/snmp), or 0.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var head []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(f) {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				return n
			}
		}
	}
	return 0
}
