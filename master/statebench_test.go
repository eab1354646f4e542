package master

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

// stateSizes are the application counts BenchmarkStateScale measures;
// scripts/bench/plot draws them (apps vs time).
var stateSizes = []int{1000, 2500, 5000, 10000}

// BenchmarkStateScale measures the replicated state with many
// applications (each one process group with two running executors, on
// 10 workers): a raft snapshot (encode and persist), its restore on a
// master that rejoins, and `app list` / `app info` answered by the
// leader; also how long a snapshot holds applies back (snapshotlock) and
// what one more submit costs (submit). Each must grow no worse than linearly with the apps. Run:
//
//	go test -run=NONE -bench=StateScale -benchtime=5x ./master
func BenchmarkStateScale(b *testing.B) {
	for _, n := range stateSizes {
		f := &fsm{state: stateWithApps(n)}
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		data, err := snap.(*snapshot).encode()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("apps=%d/snapshot", n), func(b *testing.B) {
			for b.Loop() {
				s, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Persist(&discardSink{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "snapshot-bytes")
		})
		// What holds applies back: raft calls Snapshot between applies,
		// and Persist (the encoding) runs beside them.
		b.Run(fmt.Sprintf("apps=%d/snapshotlock", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := f.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
		})
		// One more submit (with a request id and the limits, as the API
		// sends it) applied to the state of n apps, then taken out again.
		b.Run(fmt.Sprintf("apps=%d/submit", n), func(b *testing.B) {
			lim := Limits{}.withDefaults()
			lim.Executors = 1 << 30
			i := 0
			submit := func() {
				i++
				res := f.state.apply(&command{Op: opSubmit, Now: time.Unix(0, 0), Limits: &lim, Submit: &cluster.SubmitRequest{
					Name: "extra", RequestID: fmt.Sprintf("bench-%d", i), Bundle: cluster.Bundle{Digest: "sha256:x", Kind: cluster.KindTarGz},
					Processes: []cluster.Process{{Name: "web", Command: []string{"x"}, Instances: 2}},
				}})
				if res.Err != nil {
					b.Fatal(res.Err)
				}
				delete(f.state.Apps, res.ID)
				delete(f.state.requests, fmt.Sprintf("bench-%d", i))
				f.state.desired -= 2
				f.state.NextAppID--
			}
			submit() // builds the derived request index and executor total once
			for b.Loop() {
				submit()
			}
		})
		b.Run(fmt.Sprintf("apps=%d/restore", n), func(b *testing.B) {
			for b.Loop() {
				g := &fsm{state: newState()}
				if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
					b.Fatal(err)
				}
			}
		})
		m := &Master{fsm: f}
		b.Run(fmt.Sprintf("apps=%d/applist", n), func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/v1/apps", nil)
			var size int
			for b.Loop() {
				rec := httptest.NewRecorder()
				m.handleApps(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "answer-bytes")
		})
		b.Run(fmt.Sprintf("apps=%d/appinfo", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				req := httptest.NewRequest("GET", "/api/v1/apps/x", nil)
				req.SetPathValue("id", fmt.Sprint(1+i%n))
				rec := httptest.NewRecorder()
				m.handleApp(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// stateWithApps is a state holding n applications, each with one process
// group of two executors running on one of 10 workers.
func stateWithApps(n int) *State {
	s := newState()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for w := range 10 {
		id := fmt.Sprintf("%016x", 0xabc0+w)
		s.Workers[id] = &cluster.Worker{ID: id, Addr: fmt.Sprintf("127.0.0.%d:4000", w+1), CPUs: []int{0, 1, 2, 3}}
	}
	for i := range n {
		res := s.apply(&command{Op: opSubmit, Now: now, Submit: &cluster.SubmitRequest{
			Name: fmt.Sprintf("app-%05d", i), Bundle: cluster.Bundle{Digest: fmt.Sprintf("sha256:%064x", i), Size: 1 << 20, Kind: cluster.KindTarGz, Name: "app.tar.gz"},
			Processes: []cluster.Process{{Name: "web", Command: []string{"./bin/server", "--port", "8080"}, Instances: 2}},
		}})
		if res.Err != nil {
			panic(res.Err)
		}
		app := s.Apps[res.ID]
		for k := range app.Executors {
			e := &app.Executors[k]
			w := fmt.Sprintf("%016x", 0xabc0+(i+k)%10)
			e.Worker, e.WorkerAddr, e.PID, e.State = w, s.Workers[w].Addr, 10000+i*2+k, cluster.Running
			e.StartedAt, e.Generation, e.Observed = now, 1, 1
		}
		app.State = app.DeriveState()
	}
	return s
}

// discardSink is a raft.SnapshotSink that keeps nothing.
type discardSink struct{ n int }

func (d *discardSink) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discardSink) Close() error                { return nil }
func (d *discardSink) ID() string                  { return "bench" }
func (d *discardSink) Cancel() error               { return nil }

var _ raft.SnapshotSink = (*discardSink)(nil)
