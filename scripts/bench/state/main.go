// Command state benchmarks the replicated state of a real 3-master group
// (gear master processes on 127.0.0.1) with many applications:
//
//   - API throughput with -api-apps apps (1000): `app list` and `app info`
//     requests per second through the leader and through a follower, from
//     -clients closed-loop clients for -duration each, against GET
//     /api/v1/status (answered by the master itself, no state read) in the
//     same run as the floor.
//   - Master restart: a follower is kill -9ed and started again, and the
//     time until its API answers and until it has applied everything the
//     leader had committed is measured with -api-apps apps and with -apps
//     apps (10 000; the ratio shows how rejoining grows with the state),
//     then, once every master took a raft snapshot, again for a follower and
//     for the leader (with the election the leader's loss causes).
//
// Applications are submitted cheaply: one tiny bundle, one process group
// with 0 instances (no workers needed; the state still holds every app).
// It is a benchmark: it asserts nothing and stops every process it started.
//
//	go run ./scripts/bench/state                               # 1000 and 10 000 apps
//	go run ./scripts/bench/state -apps 2000 -duration 2s       # quick
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gear-run/gear/scripts/bench/internal/ports"

	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
)

var (
	appsN    = flag.Int("apps", 10000, "applications for the restart at scale")
	apiApps  = flag.Int("api-apps", 1000, "applications for the API throughput and the first restart")
	clients  = flag.Int("clients", 4, "closed-loop API clients")
	duration = flag.Duration("duration", 5*time.Second, "how long each throughput case runs")
	snapWait = flag.Duration("snapshot-wait", 150*time.Second, "how long to wait for every master to take a raft snapshot before the last restarts (raft checks every 120 s)")
	gearBin  = flag.String("gear", "", "gear binary (default: go build . into the work dir)")
	jsonOut  = flag.String("json", "", "also write the results as JSON to this file")
)

func main() {
	flag.Parse()
	if *apiApps < 1 || *appsN < *apiApps {
		fmt.Fprintln(os.Stderr, "state bench: want 1 <= -api-apps <= -apps")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "state bench:", err)
		os.Exit(1)
	}
}

// results is the -json output.
type results struct {
	Throughput []throughput `json:"throughput"`
	Restarts   []restart    `json:"restarts"`
	SubmitRate []float64    `json:"submits_per_s"` // filling to -api-apps, then to -apps
	ListMS     []listTime   `json:"app_list_ms"`
}

type throughput struct {
	Apps    int     `json:"apps"`
	Via     string  `json:"via"` // leader | follower
	Request string  `json:"request"`
	PerSec  float64 `json:"per_s"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	Errors  int     `json:"errors"`
}

type restart struct {
	Apps       int     `json:"apps"`
	Who        string  `json:"who"`      // follower | leader
	Snapshot   bool    `json:"snapshot"` // a raft snapshot was on disk
	SnapBytes  int64   `json:"snapshot_bytes"`
	APIUpS     float64 `json:"api_up_s"`     // start -> /api/v1/status answers
	CaughtUpS  float64 `json:"caught_up_s"`  // start -> applied >= the leader's commit index
	ElectionS  float64 `json:"election_s"`   // leader only: kill -> a new leader
	WriteIndex uint64  `json:"commit_index"` // what it had to reach
}

type listTime struct {
	Apps  int     `json:"apps"`
	MS    float64 `json:"ms"`
	Bytes int     `json:"bytes"`
}

type bench struct {
	work, gear string
	env        []string
	addrs      []string
	procs      []*exec.Cmd
	http       *http.Client
	client     *cluster.Client
	bundle     cluster.Bundle
	procs0     []cluster.Process // the bundle's process groups, as submitted
	apps       int
	res        results
}

func run(ctx context.Context) error {
	work, err := os.MkdirTemp("", "gear-bench-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{work: work, procs: make([]*exec.Cmd, 3)}
	defer b.stopAll()
	if b.gear = *gearBin; b.gear == "" {
		b.gear = filepath.Join(work, "gear")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.gear, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("go build (run from the repository root or pass -gear): %v\n%s", err, out)
		}
	}
	var quoted []string
	for range 3 {
		port, err := ports.Free()
		if err != nil {
			return err
		}
		b.addrs = append(b.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		quoted = append(quoted, strconv.Quote(b.addrs[len(b.addrs)-1]))
	}
	conf := filepath.Join(work, "gear.conf")
	store := filepath.Join(work, "store")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("gear.cluster.masters = [%s]\ngear.jarstore.rootpath = %q\n",
		strings.Join(quoted, ", "), "file://"+store)), 0o644); err != nil {
		return err
	}
	b.env = append(os.Environ(), "GEAR_CONF="+conf)
	b.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.client = cluster.NewClient(b.addrs, "")
	for i := range 3 {
		if err := b.start(i); err != nil {
			return err
		}
	}
	if _, err := b.leader(ctx, -1, time.Minute); err != nil {
		return err
	}
	if err := b.upload(ctx); err != nil {
		return err
	}
	fmt.Printf("## Replicated state at scale: a real 3-master group (scripts/bench/state)\n\n")
	fmt.Printf("- 3 `gear master` processes on 127.0.0.1, file:// jar store; apps: one tiny bundle, one process group with 0 instances\n")
	fmt.Printf("- throughput: %d closed-loop clients, %v per case, keep-alive; status = GET /api/v1/status (no state read) as the floor\n\n", *clients, *duration)

	if err := b.fill(ctx, *apiApps); err != nil {
		return err
	}
	if err := b.listTime(ctx); err != nil {
		return err
	}
	if err := b.throughput(ctx); err != nil {
		return err
	}
	if err := b.restart(ctx, false); err != nil {
		return err
	}
	if *appsN > *apiApps {
		if err := b.fill(ctx, *appsN); err != nil {
			return err
		}
		if err := b.listTime(ctx); err != nil {
			return err
		}
		if err := b.restart(ctx, false); err != nil {
			return err
		}
	}
	if err := b.waitSnapshots(ctx); err != nil {
		fmt.Printf("note: %v\n", err)
	}
	if err := b.restart(ctx, false); err != nil {
		return err
	}
	if err := b.restart(ctx, true); err != nil {
		return err
	}
	b.report()
	if *jsonOut != "" {
		out, _ := json.MarshalIndent(b.res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(out, '\n'), 0o644); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
	}
	return nil
}

// start spawns master i (again, with its data dir) logging to master-i.log.
func (b *bench) start(i int) error {
	host, port, _ := net.SplitHostPort(b.addrs[i])
	f, err := os.OpenFile(filepath.Join(b.work, fmt.Sprintf("master-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(b.gear, "master", "-ip", host, "-port", port, "-datadir", b.dataDir(i))
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start master %d: %w", i, err)
	}
	b.procs[i] = cmd
	return nil
}

func (b *bench) dataDir(i int) string { return filepath.Join(b.work, fmt.Sprintf("master-%d", i)) }

func (b *bench) kill(i int) {
	if p := b.procs[i]; p != nil {
		_ = p.Process.Kill()
		_ = p.Wait()
		b.procs[i] = nil
	}
}

func (b *bench) stopAll() {
	for _, p := range b.procs {
		if p != nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	for i, p := range b.procs {
		if p == nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
		b.procs[i] = nil
	}
}

// status is the part of GET /api/v1/status this bench reads.
type status struct {
	Addr        string `json:"addr"`
	State       string `json:"state"`
	Leader      string `json:"leader"`
	CommitIndex uint64 `json:"commit_index"`
	Applied     uint64 `json:"applied_index"`
}

func (b *bench) status(ctx context.Context, i int) (status, error) {
	var st status
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.addrs[i]+"/api/v1/status", nil)
	resp, err := b.http.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("status %s: HTTP %d", b.addrs[i], resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// leader waits until a master other than not leads, and returns its index.
func (b *bench) leader(ctx context.Context, not int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i := range b.addrs {
			if i == not || b.procs[i] == nil {
				continue
			}
			if st, err := b.status(ctx, i); err == nil && st.State == "leader" {
				return i, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1, fmt.Errorf("no leader within %v (logs in %s)", timeout, b.work)
}

func (b *bench) upload(ctx context.Context) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	manifest := []byte("name = \"idle\"\nprocesses { idle { command = [\"/bin/sleep\", \"1000\"], instances = 0 } }\n")
	_ = tw.WriteHeader(&tar.Header{Name: "gear-app.conf", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(manifest)
	_ = tw.Close()
	_ = zw.Close()
	data := buf.Bytes()
	m, err := bundle.ParseManifest(manifest, "")
	if err != nil {
		return err
	}
	b.procs0 = m.Processes
	bl, err := b.client.UploadBundle(ctx, "idle.tar.gz", int64(len(data)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return fmt.Errorf("upload the bundle: %w", err)
	}
	b.bundle = bl
	return nil
}

// fill submits apps until the group holds n, 16 submits in flight.
func (b *bench) fill(ctx context.Context, n int) error {
	t0 := time.Now()
	from := b.apps
	var next atomic.Int64
	next.Store(int64(from))
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				_, err := b.client.Submit(ctx, cluster.SubmitRequest{
					Name: fmt.Sprintf("app-%05d", i), Bundle: b.bundle,
					Processes: b.procs0,
				})
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("submit app %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	b.apps = n
	rate := float64(n-from) / time.Since(t0).Seconds()
	b.res.SubmitRate = append(b.res.SubmitRate, rate)
	fmt.Printf("submitted apps %d..%d in %.1f s (%.0f submits/s, 16 in flight)\n", from+1, n, time.Since(t0).Seconds(), rate)
	return nil
}

// get does one GET and returns the body's size.
func (b *bench) get(ctx context.Context, addr, path string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return int(n), err
}

// listTime is the median of 5 `app list` answers through the leader.
func (b *bench) listTime(ctx context.Context) error {
	li, err := b.leader(ctx, -1, 30*time.Second)
	if err != nil {
		return err
	}
	var ds []time.Duration
	size := 0
	for range 5 {
		t0 := time.Now()
		if size, err = b.get(ctx, b.addrs[li], "/api/v1/apps"); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	b.res.ListMS = append(b.res.ListMS, listTime{Apps: b.apps, MS: ms(ds[2]), Bytes: size})
	return nil
}

// throughput runs every request kind through the leader and a follower.
func (b *bench) throughput(ctx context.Context) error {
	li, err := b.leader(ctx, -1, 30*time.Second)
	if err != nil {
		return err
	}
	fi := (li + 1) % 3
	for _, via := range []struct {
		name string
		i    int
	}{{"leader", li}, {"follower", fi}} {
		for _, kind := range []string{"status", "app list", "app info"} {
			t := b.closedLoop(ctx, b.addrs[via.i], kind)
			t.Via = via.name
			b.res.Throughput = append(b.res.Throughput, t)
		}
	}
	return nil
}

func (b *bench) closedLoop(ctx context.Context, addr, kind string) throughput {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	end := time.Now().Add(*duration)
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for k := c; time.Now().Before(end); k += *clients {
				path := "/api/v1/status"
				switch kind {
				case "app list":
					path = "/api/v1/apps"
				case "app info":
					path = "/api/v1/apps/" + strconv.Itoa(1+k%b.apps)
				}
				t0 := time.Now()
				if _, err := b.get(ctx, addr, path); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	t := throughput{Apps: b.apps, Request: kind, Errors: errs, PerSec: float64(len(lat)) / duration.Seconds()}
	if len(lat) > 0 {
		t.P50MS, t.P99MS = ms(lat[len(lat)/2]), ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	return t
}

// snapshotSize is the size of master i's newest raft snapshot, 0 if none.
func (b *bench) snapshotSize(i int) int64 {
	dirs, _ := filepath.Glob(filepath.Join(b.dataDir(i), "raft", "snapshots", "*", "state.bin"))
	var newest int64
	var when time.Time
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.ModTime().After(when) {
			newest, when = fi.Size(), fi.ModTime()
		}
	}
	return newest
}

// waitSnapshots waits until every master has a snapshot holding all apps.
func (b *bench) waitSnapshots(ctx context.Context) error {
	t0 := time.Now()
	ok := 0
	for time.Since(t0) < *snapWait {
		ok = 0
		for i := range 3 {
			// ~80 bytes per app at least: a snapshot from before the fill is smaller.
			if b.snapshotSize(i) > int64(b.apps)*80 {
				ok++
			}
		}
		if ok == 3 {
			fmt.Printf("every master took a raft snapshot of the %d apps (waited %.0f s)\n", b.apps, time.Since(t0).Seconds())
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("%d of 3 masters took a raft snapshot of the %d apps within %v (the table says which restart had one)", ok, b.apps, *snapWait)
}

// restart kill -9s a follower (or the leader) and times its return.
func (b *bench) restart(ctx context.Context, leader bool) error {
	li, err := b.leader(ctx, -1, 30*time.Second)
	if err != nil {
		return err
	}
	victim := (li + 1) % 3
	if leader {
		victim = li
	}
	r := restart{Apps: b.apps, Who: "follower", SnapBytes: b.snapshotSize(victim)}
	r.Snapshot = r.SnapBytes > 0
	t0 := time.Now()
	b.kill(victim)
	if leader {
		r.Who = "leader"
		nl, err := b.leader(ctx, victim, time.Minute)
		if err != nil {
			return err
		}
		r.ElectionS = time.Since(t0).Seconds()
		li = nl
	}
	st, err := b.status(ctx, li)
	if err != nil {
		return err
	}
	r.WriteIndex = st.CommitIndex
	start := time.Now()
	if err := b.start(victim); err != nil {
		return err
	}
	deadline := start.Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := b.status(ctx, victim)
		if err == nil && r.APIUpS == 0 {
			r.APIUpS = time.Since(start).Seconds()
		}
		if err == nil && st.Applied >= r.WriteIndex {
			r.CaughtUpS = time.Since(start).Seconds()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.CaughtUpS == 0 {
		return fmt.Errorf("master %d did not catch up to index %d within 5 min (log: %s)", victim, r.WriteIndex, filepath.Join(b.work, fmt.Sprintf("master-%d.log", victim)))
	}
	b.res.Restarts = append(b.res.Restarts, r)
	return nil
}

func (b *bench) report() {
	fmt.Printf("\n| apps | via | request | requests/s | p50 | p99 | errors | vs status |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	floor := map[string]float64{}
	for _, t := range b.res.Throughput {
		if t.Request == "status" {
			floor[t.Via] = t.PerSec
		}
	}
	for _, t := range b.res.Throughput {
		fmt.Printf("| %d | %s | %s | %.0f | %.2f ms | %.2f ms | %d | %.2fx |\n", t.Apps, t.Via, t.Request, t.PerSec, t.P50MS, t.P99MS, t.Errors, t.PerSec/floor[t.Via])
	}
	fmt.Printf("\n| apps | app list through the leader (median of 5) | answer |\n| --- | --- | --- |\n")
	for _, l := range b.res.ListMS {
		fmt.Printf("| %d | %.1f ms | %.1f MB |\n", l.Apps, l.MS, float64(l.Bytes)/1e6)
	}
	fmt.Printf("\n| apps | kill -9 of | raft snapshot on disk | election | start -> API answers | start -> caught up (applied >= commit index) |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range b.res.Restarts {
		snap := "none (log replay)"
		if r.Snapshot {
			snap = fmt.Sprintf("%.1f MB", float64(r.SnapBytes)/1e6)
		}
		el := "-"
		if r.Who == "leader" {
			el = fmt.Sprintf("%.3f s", r.ElectionS)
		}
		fmt.Printf("| %d | %s | %s | %s | %.3f s | %.3f s |\n", r.Apps, r.Who, snap, el, r.APIUpS, r.CaughtUpS)
	}
	if rs := b.res.Restarts; len(rs) >= 2 && rs[0].Apps != rs[1].Apps {
		fmt.Printf("\nfollower rejoin, %d -> %d apps (%.0fx): %.2fx the time\n", rs[0].Apps, rs[1].Apps,
			float64(rs[1].Apps)/float64(rs[0].Apps), rs[1].CaughtUpS/rs[0].CaughtUpS)
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
