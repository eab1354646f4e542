// Command plot renders the benchmark plots in docs/ from the output of the
// benchmarks (run by scripts/bench/run-all.sh into one directory):
//
//	state.txt      go test -bench=StateScale ./master      -> bench-state.png
//	gossip.json    scripts/bench/gossip -json               -> bench-gossip.png
//	failover.json  scripts/bench/failover -json             -> bench-failover.png
//	restart.json   scripts/bench/restart -json              -> bench-restart.png
//	scale.json     scripts/bench/scale -json                -> bench-scale.png
//
// A missing input skips its plot (with a note); a malformed one is an
// error. Run from the repository root:
//
//	go run ./scripts/bench/plot -in .build/bench -out docs
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func main() {
	in := flag.String("in", ".build/bench", "directory holding the benchmarks' output")
	out := flag.String("out", "docs", "directory the PNGs are written to")
	flag.Parse()
	// A missing output directory would read as a missing input below
	// (both are fs.ErrNotExist).
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "plot: -out %s: %v\n", *out, err)
		os.Exit(1)
	}
	made := 0
	for _, p := range []struct {
		input, output string
		draw          func(in, out string) error
	}{
		{"state.txt", "bench-state.png", drawState},
		{"gossip.json", "bench-gossip.png", drawGossip},
		{"failover.json", "bench-failover.png", drawFailover},
		{"restart.json", "bench-restart.png", drawRestart},
		{"scale.json", "bench-scale.png", drawScale},
	} {
		src, dst := filepath.Join(*in, p.input), filepath.Join(*out, p.output)
		err := p.draw(src, dst)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "plot: %s: no such file (run its benchmark first); %s not drawn\n", src, dst)
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "plot: %s: %v\n", src, err)
			os.Exit(1)
		}
		fmt.Println("wrote", dst)
		made++
	}
	if made == 0 {
		fmt.Fprintln(os.Stderr, "plot: nothing to draw: run `make bench` (or the benchmarks named in this command's doc) first")
		os.Exit(1)
	}
}

// benchLine matches "BenchmarkStateScale/apps=1000/snapshot-2   5   123 ns/op ...".
var benchLine = regexp.MustCompile(`^BenchmarkStateScale/apps=(\d+)/(\w+)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op`)

func drawState(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	series := map[string]plotter.XYs{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		apps, _ := strconv.Atoi(m[1])
		ns, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return fmt.Errorf("bad ns/op in %q", sc.Text())
		}
		series[m[2]] = append(series[m[2]], plotter.XY{X: float64(apps), Y: ns / 1e6})
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(series) == 0 {
		return errors.New("no BenchmarkStateScale lines (want the output of go test -bench=StateScale ./master)")
	}
	p := plot.New()
	p.Title.Text = "Replicated state at scale (go test -bench=StateScale ./master)"
	p.X.Label.Text = "applications (2 executors each)"
	p.Y.Label.Text = "milliseconds per operation"
	p.Legend.Top, p.Legend.Left = true, true
	names := map[string]string{"snapshot": "raft snapshot (encode + persist)", "snapshotlock": "raft snapshot: applies held back", "restore": "snapshot restore", "applist": "app list (leader)", "appinfo": "app info (leader)"}
	var args []any
	for _, k := range []string{"snapshot", "snapshotlock", "restore", "applist", "appinfo"} {
		if xs, ok := series[k]; ok {
			slices.SortFunc(xs, func(a, b plotter.XY) int { return int(a.X - b.X) })
			args = append(args, names[k]+growth(xs), xs) // fit.go
		}
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	p.Y.Min, p.Y.Max = 0, p.Y.Max*1.4 // room above the lines for the legend
	return p.Save(7*vg.Inch, 4.5*vg.Inch, out)
}

// gossipResult is one size of scripts/bench/gossip -json.
type gossipResult struct {
	N         int             `json:"members"`
	Spread    []time.Duration `json:"spread_ns"`
	DeadFirst []time.Duration `json:"dead_first_ns"`
	DeadAll   []time.Duration `json:"dead_all_ns"`
}

func drawGossip(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var rs []gossipResult
	if err := json.Unmarshal(b, &rs); err != nil {
		return fmt.Errorf("want the JSON of scripts/bench/gossip -json: %w", err)
	}
	if len(rs) == 0 {
		return errors.New("no pool sizes in it")
	}
	var first, all, spread plotter.XYs
	for _, r := range rs {
		first = append(first, plotter.XY{X: float64(r.N), Y: median(r.DeadFirst)})
		all = append(all, plotter.XY{X: float64(r.N), Y: median(r.DeadAll)})
		spread = append(spread, plotter.XY{X: float64(r.N), Y: median(r.Spread)})
	}
	p := plot.New()
	p.Title.Text = "Gossip pool at scale (scripts/bench/gossip, medians)"
	p.X.Label.Text = "members"
	p.Y.Label.Text = "seconds"
	p.Legend.Top, p.Legend.Left = true, true
	if err := plotutil.AddLinePoints(p, "dead member: first to declare it", first, "dead member: all know", all, "metadata change: all know", spread); err != nil {
		return err
	}
	// Room above the lines for the legend.
	p.Y.Min = 0
	for _, xy := range append(append(append(plotter.XYs{}, first...), all...), spread...) {
		p.Y.Max = max(p.Y.Max, xy.Y*1.7, 4*1.7)
	}
	target := plotter.NewFunction(func(float64) float64 { return 4 })
	target.Color = color.RGBA{R: 200, A: 255}
	target.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(target)
	p.Legend.Add("target: dead detected <= 4 s at 200", target)
	return p.Save(7*vg.Inch, 4.5*vg.Inch, out)
}

func median(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Seconds()
}

func drawFailover(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r struct {
		Failover  map[string][]float64 `json:"failover"`
		ColdStart map[string][]float64 `json:"cold_start_write"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("want the JSON of scripts/bench/failover -json: %w", err)
	}
	p := plot.New()
	p.Title.Text = "Masters: gear vs etcd, same run (scripts/bench/failover)"
	p.Y.Label.Text = "seconds"
	var names []string
	x := 0.0
	w := vg.Points(30)
	for _, group := range []struct {
		label string
		data  map[string][]float64
	}{{"kill -9 leader -> write", r.Failover}, {"cold start -> first write", r.ColdStart}} {
		for _, sys := range []string{"gear", "etcd"} {
			vs := group.data[sys]
			if len(vs) == 0 {
				continue
			}
			box, err := plotter.NewBoxPlot(w, x, plotter.Values(vs))
			if err != nil {
				return err
			}
			if sys == "gear" {
				box.FillColor = color.RGBA{R: 80, G: 140, B: 220, A: 255}
			} else {
				box.FillColor = color.RGBA{R: 230, G: 150, B: 60, A: 255}
			}
			p.Add(box)
			names = append(names, fmt.Sprintf("%s\n%s (n=%d)", group.label, sys, len(vs)))
			x++
		}
	}
	if len(names) == 0 {
		return errors.New("no samples in it")
	}
	p.NominalX(names...)
	p.Y.Min = 0
	return p.Save(8*vg.Inch, 4.5*vg.Inch, out)
}
