package test

// The fault suite's workload, samplers and checkers (see faults_test.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/gear-run/gear/pkg/cluster"
)

// appObs is what the registry says of one app: killed, and its instances.
type appObs struct {
	Killed bool
	Inst   int
}

// faultOp is one recorded client call.
type faultOp struct {
	Client int
	Kind   string // submit, scale, kill, read
	Name   string // the app's unique name
	ID     string
	N      int // submit/scale: instances
	Call   time.Time
	Return time.Time
	// OK: acknowledged; otherwise the outcome is unknown (a timeout or an
	// error: an error may come after the write was applied).
	OK   bool
	Apps map[string]appObs // read: name -> what the registry listed
	Dup  string            // read: a name listed twice
	Err  string
}

// faultWorkload runs clients that submit, scale, kill and read apps
// through random masters, and records every call.
type faultWorkload struct {
	r      *faultRun
	bundle string
	mu     sync.Mutex
	ops    []faultOp
	ids    map[string]string // name -> id, as learnt from answers
	seq    int
	final  []cluster.App // the last read's apps
}

func newFaultWorkload(r *faultRun, bundle string) *faultWorkload {
	return &faultWorkload{r: r, bundle: bundle, ids: map[string]string{}}
}

func (w *faultWorkload) record(op faultOp) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

// knownName returns a random app name whose id is known, "" if none.
func (w *faultWorkload) knownName(rng *rand.Rand) (string, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ids) == 0 {
		return "", ""
	}
	names := make([]string, 0, len(w.ids))
	for n := range w.ids {
		names = append(names, n)
	}
	sort.Strings(names)
	n := names[rng.Intn(len(names))]
	return n, w.ids[n]
}

// masters returns the masters in a random order: the CLI tries them in
// turn, so the first gets the call.
func (w *faultWorkload) masters(rng *rand.Rand) []string {
	ms := append([]string(nil), w.r.nc.masters...)
	rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	return ms
}

const opTimeout = 20 * time.Second

func (w *faultWorkload) client(ctx context.Context, c int) {
	rng := rand.New(rand.NewSource(w.r.seed*100 + int64(c)))
	for ctx.Err() == nil {
		p := rng.Intn(100)
		name, id := w.knownName(rng)
		switch {
		case p < 25 || (name == "" && p < 60):
			w.submit(c, rng)
		case p < 45 && name != "":
			w.scale(c, rng, name, id)
		case p < 55 && name != "":
			w.kill(c, rng, name, id)
		default:
			w.read(c, rng)
		}
		time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond) // pacing, not a wait
	}
}

func (w *faultWorkload) submit(c int, rng *rand.Rand) {
	w.mu.Lock()
	w.seq++
	name := fmt.Sprintf("f%d-%d-%d", w.r.seed, c, w.seq)
	w.mu.Unlock()
	n := 1 + rng.Intn(2)
	op := faultOp{Client: c, Kind: "submit", Name: name, N: n, Call: time.Now()}
	out, errOut, code := w.r.cli(opTimeout, w.masters(rng), "app", "submit", w.bundle, "-name", name, "-executors", strconv.Itoa(n), "-quiet")
	op.Return = time.Now()
	if code == 0 {
		op.OK, op.ID = true, strings.TrimSpace(out)
		w.mu.Lock()
		w.ids[name] = op.ID
		w.mu.Unlock()
	} else {
		op.Err = firstLine(errOut)
	}
	w.record(op)
}

func (w *faultWorkload) scale(c int, rng *rand.Rand, name, id string) {
	n := rng.Intn(3)
	op := faultOp{Client: c, Kind: "scale", Name: name, ID: id, N: n, Call: time.Now()}
	_, errOut, code := w.r.cli(opTimeout, w.masters(rng), "app", "scale", id, strconv.Itoa(n))
	op.Return, op.OK, op.Err = time.Now(), code == 0, firstLine(errOut)
	w.record(op)
}

func (w *faultWorkload) kill(c int, rng *rand.Rand, name, id string) {
	op := faultOp{Client: c, Kind: "kill", Name: name, ID: id, Call: time.Now()}
	_, errOut, code := w.r.cli(opTimeout, w.masters(rng), "app", "kill", id)
	op.Return, op.OK, op.Err = time.Now(), code == 0, firstLine(errOut)
	w.record(op)
}

// read lists the apps; a failed read is not recorded (it observed nothing).
func (w *faultWorkload) read(c int, rng *rand.Rand) bool {
	op := faultOp{Client: c, Kind: "read", Call: time.Now()}
	out, _, code := w.r.cli(opTimeout, w.masters(rng), "app", "list", "-json")
	op.Return = time.Now()
	if code != 0 {
		return false
	}
	var apps []cluster.App
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		return false
	}
	op.OK, op.Apps = true, map[string]appObs{}
	w.mu.Lock()
	for _, a := range apps {
		if _, dup := op.Apps[a.Name]; dup {
			op.Dup = a.Name
		}
		inst := 0
		for _, p := range a.Processes {
			inst += p.Instances
		}
		op.Apps[a.Name] = appObs{Killed: a.State == cluster.AppKilled || !a.Killed.IsZero(), Inst: inst}
		if _, ok := w.ids[a.Name]; !ok {
			w.ids[a.Name] = a.ID
		}
	}
	w.final = apps
	w.mu.Unlock()
	w.record(op)
	return true
}

// finalRead reads once more after convergence, so that the checker sees the
// final state in the history.
func (w *faultWorkload) finalRead(t *testing.T) {
	rng := rand.New(rand.NewSource(w.r.seed))
	waitFor(t, 30*time.Second, "a final read", func() bool { return w.read(-1+len(w.r.nc.masters), rng) })
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// Porcupine's model of the registry: the state is a canonical string of
// name=killed/instances entries (comparable with ==).

type regInput struct {
	Kind, Name string
	N          int
}

type regOutput struct {
	OK   bool
	Apps map[string]appObs
	Dup  string
}

func encodeReg(m map[string]appObs) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v/%d;", k, m[k].Killed, m[k].Inst)
	}
	return b.String()
}

func decodeReg(s string) map[string]appObs {
	m := map[string]appObs{}
	for _, e := range strings.Split(s, ";") {
		if e == "" {
			continue
		}
		k, v, _ := strings.Cut(e, "=")
		ks, is, _ := strings.Cut(v, "/")
		n, _ := strconv.Atoi(is)
		m[k] = appObs{Killed: ks == "true", Inst: n}
	}
	return m
}

var registryModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(regInput), output.(regOutput)
		m := decodeReg(s)
		a, exists := m[in.Name]
		switch in.Kind {
		case "submit":
			if exists {
				return false, s // names are unique: a second one is a duplicate
			}
			m[in.Name] = appObs{Inst: in.N}
			return true, encodeReg(m)
		case "kill":
			if !exists {
				return !out.OK, s // acknowledged kill of an app that is not there
			}
			a.Killed = true
			m[in.Name] = a
			return true, encodeReg(m)
		case "scale":
			if !exists || a.Killed {
				return !out.OK, s
			}
			a.Inst = in.N
			m[in.Name] = a
			return true, encodeReg(m)
		case "read":
			return out.Dup == "" && encodeReg(out.Apps) == s, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.Kind == "read" {
			return "read -> " + encodeReg(out.Apps)
		}
		return fmt.Sprintf("%s(%s,%d) ok=%v", in.Kind, in.Name, in.N, out.OK)
	},
}

// leaderSampler asks the masters who leads every 250 ms and keeps, per
// term, every master that said it led in it.
type leaderSampler struct {
	r       *faultRun
	mu      sync.Mutex
	leaders map[uint64]map[string]bool
	samples int
}

func newLeaderSampler(r *faultRun) *leaderSampler {
	return &leaderSampler{r: r, leaders: map[uint64]map[string]bool{}}
}

func (s *leaderSampler) run(ctx context.Context) {
	for ctx.Err() == nil {
		out, _, code := s.r.cli(3*time.Second, s.r.nc.masters, "masters", "-json")
		if code == 0 {
			s.mu.Lock()
			s.samples++
			for _, v := range parseMasters(out) {
				if v.State == "leader" {
					if s.leaders[v.Term] == nil {
						s.leaders[v.Term] = map[string]bool{}
					}
					s.leaders[v.Term][v.Addr] = true
				}
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func parseMasters(out string) []cluster.Master {
	var ms []cluster.Master
	_ = json.Unmarshal([]byte(out), &ms)
	return ms
}

// converge waits until one leader leads every master with quorum, every
// worker is alive and every app runs as many executors as it wants (none
// for a killed app); it returns how long that took, -1 if it never did.
func (r *faultRun) converge(t *testing.T, wl *faultWorkload) time.Duration {
	start := time.Now()
	deadline := start.Add(120 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		why = r.convergedNow()
		if why == "" {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.anomaly(t, "the cluster did not converge within 120s after the last fault healed: %s", why)
	return -1
}

// convergedNow says why the cluster has not converged, "" if it has.
func (r *faultRun) convergedNow() string {
	out, _, code := r.cli(10*time.Second, r.nc.masters, "masters", "-json")
	if code != 0 {
		return "masters -json fails"
	}
	vs := parseMasters(out)
	if len(vs) != faultMasters {
		return fmt.Sprintf("%d masters listed", len(vs))
	}
	for _, v := range vs {
		if v.State == "unreachable" || v.Leader == "" || v.Leader != vs[0].Leader || v.Term != vs[0].Term || !v.Quorum {
			return fmt.Sprintf("masters disagree: %s %s term %d leader %q quorum %v", v.Addr, v.State, v.Term, v.Leader, v.Quorum)
		}
	}
	if n := r.aliveWorkers(); n != faultWorkers {
		return fmt.Sprintf("%d of %d workers alive", n, faultWorkers)
	}
	out, _, code = r.cli(10*time.Second, r.nc.masters, "app", "list", "-json")
	if code != 0 {
		return "app list fails"
	}
	var apps []cluster.App
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		return "app list: " + err.Error()
	}
	for _, a := range apps {
		want := 0
		if a.State != cluster.AppKilled {
			for _, p := range a.Processes {
				want += p.Instances
			}
		}
		running, other := 0, 0
		for _, e := range a.Executors {
			if e.State == cluster.Running && e.PID > 0 {
				running++
			} else if e.State != cluster.Stopped {
				other++
			}
		}
		if running != want || (a.State == cluster.AppKilled && other > 0) {
			return fmt.Sprintf("app %s (%s) %s: %d of %d executors run", a.ID, a.Name, a.State, running, want)
		}
	}
	return ""
}

// check runs every checker over what the run recorded.
func (r *faultRun) check(t *testing.T, wl *faultWorkload, s *leaderSampler) {
	// 1. The registry's history is linearizable.
	end := time.Now().Add(time.Hour)
	// An unknown outcome the final state settles is dropped (it keeps the
	// search small): apps are never deleted and kills never undone, so a
	// submit whose name the final read lacks, or a kill of an app the final
	// read shows alive, did not take effect.
	final := map[string]appObs{}
	if r.converged >= 0 && len(wl.ops) > 0 {
		final = wl.ops[len(wl.ops)-1].Apps
	}
	var hist []porcupine.Operation
	for _, op := range wl.ops {
		if !op.OK && r.converged >= 0 {
			a, ok := final[op.Name]
			if (op.Kind == "submit" && !ok) || (op.Kind == "kill" && ok && !a.Killed) {
				continue
			}
		}
		ret := op.Return
		if !op.OK {
			ret = end // unknown: it may take effect at any time after its call
		}
		hist = append(hist, porcupine.Operation{
			ClientId: max(op.Client, 0), Input: regInput{Kind: op.Kind, Name: op.Name, N: op.N},
			Call: op.Call.UnixNano(), Output: regOutput{OK: op.OK, Apps: op.Apps, Dup: op.Dup}, Return: ret.UnixNano(),
		})
	}
	res, info := porcupine.CheckOperationsVerbose(registryModel, hist, 60*time.Second)
	r.lin = string(res)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("gear-faults-%d.html", r.seed))
		if f, err := os.Create(path); err == nil {
			_ = porcupine.Visualize(registryModel, info, f)
			f.Close()
		}
		r.anomaly(t, "the app registry's history is not linearizable (%d operations; visualization: %s)", len(hist), path)
	case porcupine.Unknown:
		t.Logf("linearizability check timed out (%d operations): inconclusive", len(hist))
	}
	for _, op := range wl.ops {
		if op.Kind == "read" && op.Dup != "" {
			r.anomaly(t, "a read listed app name %s twice: a submit was applied twice", op.Dup)
		}
	}

	// 2. Every acknowledged write is in the final state.
	if r.converged >= 0 {
		final := map[string]cluster.App{}
		for _, a := range wl.final {
			final[a.Name] = a
		}
		for _, op := range wl.ops {
			if !op.OK {
				continue
			}
			a, ok := final[op.Name]
			switch op.Kind {
			case "submit":
				if !ok {
					r.anomaly(t, "acknowledged submit of %s (id %s) is lost", op.Name, op.ID)
				}
			case "kill":
				if !ok || a.State != cluster.AppKilled {
					r.anomaly(t, "app %s (id %s) was killed (acknowledged) but is %s in the final state", op.Name, op.ID, a.State)
				}
			}
		}
	}

	// 3. At most one leader per term.
	s.mu.Lock()
	for term, ls := range s.leaders {
		if len(ls) > 1 {
			r.anomaly(t, "term %d had %d leaders: %v", term, len(ls), ls)
		}
	}
	t.Logf("leaders sampled %d times over %d terms", s.samples, len(s.leaders))
	s.mu.Unlock()

	// 4. Executors: no id on two workers at once beyond the fencing
	// bound; every bundle matches its digest.
	r.checkHeartbeats(t, wl)
}

// incarnation is one process of one executor, as its heartbeats show it.
type incarnation struct {
	app         string
	worker      string
	pid         string
	first, last time.Time
}

func (r *faultRun) checkHeartbeats(t *testing.T, wl *faultWorkload) {
	digests := map[string]string{}   // app id -> digest
	killed := map[string]time.Time{} // app id -> when it was killed
	for _, a := range wl.final {
		digests[a.ID] = strings.TrimPrefix(a.Bundle.Digest, "sha256:")
		if !a.Killed.IsZero() {
			killed[a.ID] = a.Killed
		}
	}
	nodeOf := map[string]int{} // worker id -> node
	for i := 0; i < faultWorkers; i++ {
		id := strings.TrimSpace(readFile(t, filepath.Join(r.nc.dir, fmt.Sprintf("worker%d", i), "worker-id")))
		nodeOf[id] = faultMasters + i
	}
	f, err := os.Open(filepath.Join(r.out, "hb"))
	if err != nil {
		t.Logf("no heartbeats: %v", err)
		return
	}
	defer f.Close()
	incs := map[string]map[string]*incarnation{} // executor -> worker/pid -> incarnation
	lines, bad := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 7 || fs[0] != "hb" {
			continue // a line cut by a kill -9 of its writer
		}
		lines++
		app, exec, worker, pid, sum := fs[1], fs[2], fs[3], fs[4], fs[6]
		ns, err := strconv.ParseInt(fs[5], 10, 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, ns)
		if d, ok := digests[app]; ok && d != sum {
			bad++
			if bad <= 3 {
				r.anomaly(t, "executor %s on worker %s ran a bundle with sha256 %s, but app %s's digest is %s", exec, worker, sum, app, d)
			}
		}
		if incs[exec] == nil {
			incs[exec] = map[string]*incarnation{}
		}
		k := worker + "/" + pid
		in := incs[exec][k]
		if in == nil {
			in = &incarnation{worker: worker, pid: pid, first: at, last: at}
			incs[exec][k] = in
		}
		in.first, in.last = minTime(in.first, at), maxTime(in.last, at)
		in.app = app
	}
	// A killed app's executors stop: its workers learn of the kill with
	// their next heartbeat, or fence themselves within
	// stop-after-disconnect; allow that plus the time they were frozen or
	// dead, plus a few seconds to stop.
	for exec, m := range incs {
		for _, in := range m {
			k, ok := killed[in.app]
			if !ok {
				continue
			}
			allowed := stopAfterDisconnect + r.downWithin(nodeOf[in.worker], k, in.last) + 5*time.Second
			if in.last.Sub(k) > allowed {
				r.anomaly(t, "executor %s (worker %s pid %s) still ran %v after its app %s was killed at %s (bound %v): an orphaned executor",
					exec, in.worker, in.pid, in.last.Sub(k).Round(time.Millisecond), in.app, k.Format("15:04:05.000"), allowed)
			}
		}
	}
	overlaps := 0
	for exec, m := range incs {
		var list []*incarnation
		for _, in := range m {
			list = append(list, in)
		}
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				a, b := list[i], list[j]
				from, to := maxTime(a.first, b.first), minTime(a.last, b.last)
				if !to.After(from) {
					continue
				}
				overlaps++
				// The older incarnation's worker should have fenced it: allow
				// stop-after-disconnect, plus the time that worker was frozen
				// or dead (it cannot fence then), plus one heartbeat.
				old := a
				if b.first.Before(a.first) {
					old = b
				}
				allowed := stopAfterDisconnect + r.downWithin(nodeOf[old.worker], from, to) + time.Second
				if a.worker == b.worker {
					allowed = r.downWithin(nodeOf[old.worker], from, to) + time.Second
				}
				if to.Sub(from) > allowed {
					r.anomaly(t, "executor %s ran twice for %v (worker %s pid %s and worker %s pid %s, from %s), more than the fencing bound %v",
						exec, to.Sub(from).Round(time.Millisecond), a.worker, a.pid, b.worker, b.pid, from.Format("15:04:05.000"), allowed)
				}
			}
		}
	}
	t.Logf("heartbeats: %d lines, %d executors, %d overlapping incarnations", lines, len(incs), overlaps)
}

// downWithin is how long worker node n was frozen or dead within [from, to].
func (r *faultRun) downWithin(n int, from, to time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var d time.Duration
	for _, iv := range r.down[n] {
		s, e := maxTime(iv[0], from), minTime(iv[1], to)
		if e.After(s) {
			d += e.Sub(s)
		}
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// faultsFixed lists what the suite found in gear and how it was fixed.
const faultsFixed = `- **Stale reads from a cut-off leader.** A leader cut off from the other
  masters answered app and worker reads from its own state until its lease
  ran out (1.5 s), while the majority had already elected a new leader that
  acknowledged writes. Reads are now ReadIndex reads (master/quorum.go:
  a barrier once per term, VerifyLeader, wait for the apply index).
  Regression: TestCutOffLeaderServesNoStaleRead.
- **Master could not restart after a log suffix was cleared** (seed 4).
  raft-wal v0.4.0 marked a truncated tail segment sealed without writing
  its index block; the master killed after that found its log "corrupt"
  (sealed segment has no index block) and refused to start. Upgraded to
  raft-wal v0.4.1 (hashicorp/raft-wal#31). Regression:
  master.TestLogSurvivesTailTruncation.
- **A retried submit made a second app** (seed 8). The client retries a
  submit on another master after a 503; when the first attempt had been
  applied (the answer was lost with the forwarding connection or the
  leadership), the retry created a duplicate. Submits now carry a request
  id that retries keep, and the state returns the app an id already made.
  Regressions: master.TestSubmitRetryAppliedOnce,
  cluster.TestSubmitRetryKeepsRequestID.
`

// faultsOpen lists anomalies seen but not yet reproduced or fixed.
const faultsOpen = `- **An executor outlived its worker** (seed 6, once in about 20 runs;
  not reproduced on replay): after the cluster stopped, one hb.sh process
  of an app was still running, and the run had one overlapping incarnation
  of an executor (within the fencing bound). The schedule had no worker
  kill, only bridges, a partition, flaps and a slow link on the workers'
  links: a worker seems to lose track of a process it started. The suite
  now also fails when a killed app's executor keeps running past the
  fencing bound, which names the executor, worker and pid. Suspected
  cause, fixed in worker/executor.go: an executor stopped while it was
  still preparing (bundle download) started its process anyway, and the
  supervisor left it running untracked. No deterministic regression test
  yet.
`

// faultReport is the summary `make faults` writes to docs/FAULTS.md.
func faultReport(runs []*faultRun) string {
	var b strings.Builder
	b.WriteString("# Fault suite results\n\nWritten by `make faults N=...` (test/faults_test.go). Each schedule ran on a fresh cluster of 3 masters and 3 workers, each in its own network namespace; replay one with `make faults SEED=<seed>`. Network cuts (one-way, partition, bridge) are blackhole routes in the senders' namespaces, or, for half of them, packets lost in the bridge (\"lost on the wire\"): a blackhole route fails the sends locally, a lost packet is retransmitted until TCP's timers give up.\n\n")
	b.WriteString("| seed | faults | operations (acknowledged) | linearizable | converged after | anomalies |\n|---|---|---|---|---|---|\n")
	kinds := map[faultKind]int{}
	total := 0
	for _, r := range runs {
		ok := 0
		for _, op := range r.ops {
			if op.OK {
				ok++
			}
		}
		conv := "did not"
		if r.converged >= 0 {
			conv = r.converged.Round(100 * time.Millisecond).String()
		}
		for _, f := range r.schedule {
			k := f.Kind
			if f.Wire {
				k += " (lost on the wire)"
			}
			kinds[k]++
		}
		total += len(r.anoms)
		fmt.Fprintf(&b, "| %d | %d | %d (%d) | %s | %s | %d |\n", r.seed, len(r.schedule), len(r.ops), ok, r.lin, conv, len(r.anoms))
	}
	b.WriteString("\n## Faults injected\n\n")
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("- %s: %d", k, n))
	}
	sort.Strings(ks)
	b.WriteString(strings.Join(ks, "\n") + "\n")
	b.WriteString("\n## Convergence\n\nTime from the last fault's heal to one leader, every worker attached and every app at its desired executors:\n\n")
	var conv []time.Duration
	for _, r := range runs {
		if r.converged >= 0 {
			conv = append(conv, r.converged)
		}
	}
	slices.Sort(conv)
	if len(conv) > 0 {
		fmt.Fprintf(&b, "- %d of %d schedules converged; median %v, max %v\n", len(conv), len(runs),
			conv[len(conv)/2].Round(10*time.Millisecond), conv[len(conv)-1].Round(10*time.Millisecond))
	}
	b.WriteString("\n## Anomalies found and fixed\n\n" + faultsFixed)
	b.WriteString("\n## Seen, not yet explained\n\n" + faultsOpen)
	fmt.Fprintf(&b, "\n## Anomalies in this run (%d)\n\n", total)
	for _, r := range runs {
		for _, a := range r.anoms {
			fmt.Fprintf(&b, "- seed %d: %s\n", r.seed, a)
		}
	}
	b.WriteString("\n## Schedules\n\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "seed %d:\n\n```\n%s```\n\n", r.seed, r.scheduleText())
	}
	return b.String()
}
