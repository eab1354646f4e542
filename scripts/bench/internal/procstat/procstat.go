// Package procstat reads what the benchmarks report about the machine and
// their processes from /proc: the load average (noted beside every result,
// since these machines are noisy), a process's CPU time, and its resident
// and peak memory.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// LoadAvg is the 1, 5 and 15 minute load average, or "?".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// CPU is a process's user+system CPU time (clock ticks of 10 ms); 0 when
// the process is gone.
func CPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// RSS is a process's resident memory in bytes (VmRSS), -1 when unknown.
func RSS(pid int) int64 { return statusBytes(pid, "VmRSS:") }

// PeakRSS is a process's peak resident memory in bytes (VmHWM), -1 when
// unknown.
func PeakRSS(pid int) int64 { return statusBytes(pid, "VmHWM:") }

func statusBytes(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}
