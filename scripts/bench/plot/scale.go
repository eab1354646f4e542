package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// scaleReport is the part of scripts/bench/scale -json that the plot
// reads.
type scaleReport struct {
	Workers int           `json:"workers"`
	Results []scaleResult `json:"results"`
}

type scaleResult struct {
	Executors int     `json:"executors"`
	GearS     float64 `json:"gear_s"`
	BareS     float64 `json:"bare_s"`
}

// drawScale plots submit -> all RUNNING against the bare fork/exec time
// by executor count, with the 1.5x-bare target.
func drawScale(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r scaleReport
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("want the JSON of scripts/bench/scale -json: %w", err)
	}
	if len(r.Results) == 0 {
		return errors.New("no executor counts in it")
	}
	rs := slices.Clone(r.Results)
	slices.SortFunc(rs, func(a, b scaleResult) int { return a.Executors - b.Executors })
	var gear, bare, target plotter.XYs
	for _, x := range rs {
		n := float64(x.Executors)
		gear = append(gear, plotter.XY{X: n, Y: x.GearS})
		bare = append(bare, plotter.XY{X: n, Y: x.BareS})
		target = append(target, plotter.XY{X: n, Y: 1.5 * x.BareS})
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Submit -> all RUNNING, %d workers (scripts/bench/scale)", r.Workers)
	p.X.Label.Text = "executors"
	p.Y.Label.Text = "seconds"
	p.Legend.Top, p.Legend.Left = true, true
	if len(rs) > 1 && rs[0].Executors > 0 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if err := plotutil.AddLinePoints(p, "gear: submit -> all RUNNING", gear, "bare: Go loop fork/exec of sleep", bare); err != nil {
		return err
	}
	line, err := plotter.NewLine(target)
	if err != nil {
		return err
	}
	line.Color = color.RGBA{R: 200, A: 255}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(line)
	p.Legend.Add("target at 10 000: 1.5x bare", line)
	p.Y.Min = 0
	for _, xy := range append(append(plotter.XYs{}, gear...), target...) {
		p.Y.Max = max(p.Y.Max, xy.Y*1.4)
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, out)
}
