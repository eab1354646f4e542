package config

import (
	"strings"

	"github.com/gear-run/gear/pkg/hocon"
)

// closest returns the candidate nearest to s: the smallest edit distance
// within max(2, len(s)/4), or failing that the only candidate with the same
// last segment (gear.masters -> gear.cluster.masters).
func closest(s string, candidates []string, sep string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := hocon.EditDistance(s, c); d < bestD {
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
