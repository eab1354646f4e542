package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// summary holds order statistics of a sample.
type summary struct {
	N                     int
	Min, Median, P90, Max time.Duration
}

// quantile interpolates linearly between the closest ranks of the sorted
// sample s (numpy's default), q in [0, 1].
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return s[lo] + time.Duration(frac*float64(s[hi]-s[lo]))
}

func summarize(d []time.Duration) summary {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return summary{}
	}
	return summary{N: len(s), Min: s[0], Median: quantile(s, 0.5), P90: quantile(s, 0.9), Max: s[len(s)-1]}
}

// secs formats d as seconds with millisecond precision.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

// Targets gear must meet (printed as PASS/MISS, not an exit status).
const (
	targetMedian = 1200 * time.Millisecond
	targetP90    = 1400 * time.Millisecond
)

// check is one target and how gear did against it.
type check struct {
	What string
	Got  string
	Pass bool
}

// checks evaluates gear's targets: failover median and p90 (a kill round
// without an accepted write fails both), and no election caused by pauses
// of 0.5 s and 1 s. Pause lengths that were not run are not checked.
func checks(failover []time.Duration, misses int, pauses map[time.Duration][]pauseResult) []check {
	s := summarize(failover)
	var out []check
	got := func(d time.Duration) string {
		if misses > 0 {
			return fmt.Sprintf("%s, %d rounds without failover", secs(d), misses)
		}
		return secs(d)
	}
	out = append(out,
		check{"failover median <= " + secs(targetMedian), got(s.Median), s.N > 0 && misses == 0 && s.Median <= targetMedian},
		check{"failover p90 <= " + secs(targetP90), got(s.P90), s.N > 0 && misses == 0 && s.P90 <= targetP90},
	)
	for _, p := range []time.Duration{500 * time.Millisecond, time.Second} {
		rs, ok := pauses[p]
		if !ok {
			continue
		}
		n := 0
		for _, r := range rs {
			if r.disrupted() {
				n++
			}
		}
		out = append(out, check{
			What: fmt.Sprintf("no election after a %v pause", p),
			Got:  fmt.Sprintf("%d of %d rounds disrupted", n, len(rs)),
			Pass: len(rs) > 0 && n == 0,
		})
	}
	return out
}

// table writes a Markdown table.
func table(w io.Writer, header []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(header, " | "))
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(seps, " | "))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}
