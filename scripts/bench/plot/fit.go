package main

import (
	"fmt"
	"math"

	"gonum.org/v1/plot/plotter"
)

// growth fits y = a·x^k to xs by least squares on log-log and names k:
// k = 1 is linear (10x the apps, 10x the time), k = 2 quadratic. It also
// gives the ratio per 10x from the fit (10^k).
func growth(xs plotter.XYs) string {
	var n, sx, sy, sxx, sxy float64
	for _, p := range xs {
		if p.X <= 0 || p.Y <= 0 {
			continue
		}
		x, y := math.Log10(p.X), math.Log10(p.Y)
		n++
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if n < 2 || n*sxx-sx*sx == 0 {
		return ""
	}
	k := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	return fmt.Sprintf(" (fit: time ~ apps^%.2f, %.1fx per 10x)", k, math.Pow(10, k))
}
