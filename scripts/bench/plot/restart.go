package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// drawRestart draws scripts/bench/restart -json: the distribution of kill
// -9 -> served again per supervisor, next to bare fork/exec -> accept.
func drawRestart(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r struct {
		Rounds  int                  `json:"rounds"`
		Seconds map[string][]float64 `json:"seconds"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("want the JSON of scripts/bench/restart -json: %w", err)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Restart after kill -9 until the port is served again (scripts/bench/restart, %d rounds)", r.Rounds)
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Y.Label.Text = "milliseconds"
	fill := map[string]color.Color{
		"bare":  color.RGBA{R: 160, G: 160, B: 160, A: 255},
		"gear":  color.RGBA{R: 80, G: 140, B: 220, A: 255},
		"runit": color.RGBA{R: 110, G: 190, B: 110, A: 255},
		"pm2":   color.RGBA{R: 230, G: 150, B: 60, A: 255},
	}
	labels := map[string]string{"bare": "bare fork/exec\n-> accept", "gear": "gear\n(procs.Supervisor)", "runit": "runit\n(runsv)", "pm2": "PM2"}
	var names []string
	x := 0.0
	hi := 0.0
	for _, k := range []string{"bare", "gear", "runit", "pm2"} {
		vs := r.Seconds[k]
		if len(vs) == 0 {
			continue
		}
		ms := make(plotter.Values, len(vs))
		for i, v := range vs {
			ms[i] = v * 1000
			hi = max(hi, ms[i])
		}
		box, err := plotter.NewBoxPlot(vg.Points(30), x, ms)
		if err != nil {
			return err
		}
		box.FillColor = fill[k]
		p.Add(box)
		names = append(names, fmt.Sprintf("%s\n(n=%d)", labels[k], len(vs)))
		x++
	}
	if len(names) == 0 {
		return errors.New("no samples in it")
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, hi*1.1
	return p.Save(8*vg.Inch, 4.5*vg.Inch, out)
}
