package config

import "strings"

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// closest returns the candidate nearest to s: the smallest edit distance
// within max(2, len(s)/4), or failing that the only candidate with the same
// last segment (gear.masters -> gear.cluster.masters).
func closest(s string, candidates []string, sep string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(2, len(s)/4) {
		return best
	}
	last := s[strings.LastIndex(s, sep)+1:]
	match := ""
	for _, c := range candidates {
		if c[strings.LastIndex(c, sep)+1:] == last {
			if match != "" {
				return ""
			}
			match = c
		}
	}
	return match
}

// suggestion returns ", did you mean gear.x.y?" or "".
func suggestion(key string) string {
	if s := closest(key, Keys(), "."); s != "" {
		return ", did you mean " + s + "?"
	}
	return ""
}
