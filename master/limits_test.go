package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/cluster"
)

func TestEncodeCommandRefusesOversizeEntries(t *testing.T) {
	small := command{Op: opSubmit, Submit: &cluster.SubmitRequest{Name: "web", Processes: []cluster.Process{{Name: "web", Command: []string{"x"}, Instances: 1}}}}
	if b, err := encodeCommand(small); err != nil || len(b) == 0 {
		t.Fatalf("a small submit: %v", err)
	}
	big := small
	req := *small.Submit
	req.Processes = []cluster.Process{{Name: "web", Command: []string{"x"}, Instances: 1, Env: map[string]string{"BLOB": strings.Repeat("x", MaxEntrySize)}}}
	big.Submit = &req
	_, err := encodeCommand(big)
	if !errors.Is(err, ErrEntryTooLarge) || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a submit over 1 MiB: got %v, want ErrEntryTooLarge (a 400)", err)
	}
	if !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("the error must name the limit: %v", err)
	}
}

func TestSplitBySizeKeepsEveryBatchUnderTheLimit(t *testing.T) {
	var as []assignment
	for i := range 10000 {
		as = append(as, assignment{Executor: fmt.Sprintf("1.web.%d", i), Worker: "worker-with-a-rather-long-id-" + fmt.Sprint(i%3),
			WorkerAddr: "127.0.0.1:40000", CPUs: []int{}, Error: strings.Repeat("e", 100)})
	}
	whole, _ := json.Marshal(command{Op: opAssign, Assign: as})
	if len(whole) <= MaxEntrySize {
		t.Fatalf("test setup: 10 000 placements encode to %d bytes, want more than one entry's worth", len(whole))
	}
	batches, err := splitBySize(as, batchBudget)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) < 2 {
		t.Fatalf("%d bytes of placements in %d batch(es)", len(whole), len(batches))
	}
	n := 0
	for i, b := range batches {
		enc, err := encodeCommand(command{Op: opAssign, Assign: b})
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if len(enc) > MaxEntrySize || len(b) == 0 {
			t.Fatalf("batch %d: %d items, %d bytes", i, len(b), len(enc))
		}
		for _, a := range b {
			if a.Executor != as[n].Executor {
				t.Fatalf("batches must keep the order: item %d is %s, want %s", n, a.Executor, as[n].Executor)
			}
			n++
		}
	}
	if n != len(as) {
		t.Fatalf("batches hold %d of %d placements", n, len(as))
	}
	if b, err := splitBySize([]string{}, batchBudget); err != nil || len(b) != 0 {
		t.Fatalf("nothing to split: %v %v", b, err)
	}
	if _, err := splitBySize([]string{"ok", strings.Repeat("x", 100)}, 50); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("an item over the budget on its own: %v", err)
	}
}

func TestTrimReportFitsAndKeepsTheNewestLines(t *testing.T) {
	var tail []string
	for i := range 200 {
		tail = append(tail, fmt.Sprintf("line %d %s", i, strings.Repeat("z", 1000)))
	}
	r := trimReport(cluster.ExecutorReport{ID: "1.web.0", State: cluster.Running, LogTail: tail, LastError: strings.Repeat("e", 50000)}, maxReportSize)
	b, _ := json.Marshal(r)
	if len(b) > maxReportSize {
		t.Fatalf("trimmed report is %d bytes, over %d", len(b), maxReportSize)
	}
	if len(r.LogTail) > 0 && !strings.HasPrefix(r.LogTail[len(r.LogTail)-1], "line 199 ") {
		t.Fatalf("the newest line must survive: %q", r.LogTail[len(r.LogTail)-1][:10])
	}
	if r.State != cluster.Running || r.ID != "1.web.0" {
		t.Fatalf("trimming lost the state: %+v", r)
	}
}

func testLimits() *Limits {
	l := Limits{InstancesPerProcess: 10000, ExecutorsPerApp: 10000, Executors: 25000, NameLength: 200}
	return &l
}

func TestLimitsOnSubmitAndScale(t *testing.T) {
	lim := testLimits()
	s := newState()
	sub := func(name string, procs ...cluster.Process) result {
		c := submitCmd(name, procs...)
		c.Limits = lim
		return s.apply(c)
	}
	scale := func(app string, n int) result {
		return s.apply(&command{Op: opScale, App: app, Scale: &cluster.ScaleRequest{Instances: n}, Limits: lim})
	}
	p := func(name string, n int) cluster.Process {
		return cluster.Process{Name: name, Command: []string{"x"}, Instances: n}
	}
	// 40 groups x 10 000 instances: every group is within its limit, the app is not.
	var forty []cluster.Process
	for i := range 40 {
		forty = append(forty, p(fmt.Sprintf("g%d", i), 10000))
	}
	if r := sub("big", forty...); !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Error(), "gear.limits.executors-per-app = 10000") {
		t.Fatalf("40 x 10 000: %v", r.Err)
	}
	if r := sub(strings.Repeat("n", 7<<20), p("web", 1)); !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Error(), "gear.limits.name-length = 200") || len(r.Err.Error()) > 500 {
		t.Fatalf("a 7 MB name: %.300v", r.Err)
	}
	if len(s.Apps) != 0 {
		t.Fatalf("refused submits created apps: %v", len(s.Apps))
	}
	r := sub("web", p("web", 1))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	id := r.ID
	r = scale(id, 1000000)
	if !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Error(), "scale to 1000000 instances: over gear.limits.instances-per-process = 10000 (raise it in gear.conf)") {
		t.Fatalf("scale to a million: %v", r.Err)
	}
	if n := len(s.Apps[id].Executors); n != 1 || s.Apps[id].Processes[0].Instances != 1 {
		t.Fatalf("a refused scale changed the app: %d executors", n)
	}
	if r := scale(id, 10000); r.Err != nil {
		t.Fatalf("scale to 10 000: %v", r.Err)
	}
	if n := len(s.Apps[id].Executors); n != 10000 {
		t.Fatalf("scale to 10 000 made %d executors", n)
	}
	// The cluster limit (25 000 here) counts the other live apps.
	r2 := sub("second", p("a", 10000))
	if r2.Err != nil {
		t.Fatal(r2.Err)
	}
	if r := sub("third", p("a", 5001)); !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Error(), "gear.limits.executors = 25000") {
		t.Fatalf("over the cluster limit: %v", r.Err)
	}
	if r := scale(r2.ID, 10000); r.Err != nil {
		t.Fatalf("a scale to the size it has must pass: %v", r.Err)
	}
	third := sub("third", p("a", 5000))
	if third.Err != nil {
		t.Fatal(third.Err)
	}
	if r := scale(third.ID, 5001); !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Error(), "gear.limits.executors = 25000") {
		t.Fatalf("a scale over the cluster limit: %v", r.Err)
	}
	// Killed apps do not count.
	s.apply(&command{Op: opKill, App: id})
	if r := scale(third.ID, 10000); r.Err != nil {
		t.Fatalf("after a kill there is room: %v", r.Err)
	}
	// Limits lowered below what runs: growing is refused, shrinking is not.
	low := Limits{InstancesPerProcess: 10, ExecutorsPerApp: 10, Executors: 10, NameLength: 200}
	if r := s.apply(&command{Op: opScale, App: third.ID, Scale: &cluster.ScaleRequest{Instances: 10001}, Limits: &low}); !errors.Is(r.Err, ErrBadRequest) {
		t.Fatalf("growing over lowered limits: %v", r.Err)
	}
	if r := s.apply(&command{Op: opScale, App: third.ID, Scale: &cluster.ScaleRequest{Instances: 5000}, Limits: &low}); r.Err != nil {
		t.Fatalf("shrinking under lowered limits must pass: %v", r.Err)
	}
	// An app with two groups: the other group counts towards executors-per-app.
	two := sub("two", p("a", 1), p("b", 1))
	s.apply(&command{Op: opKill, App: third.ID})
	r = s.apply(&command{Op: opScale, App: two.ID, Scale: &cluster.ScaleRequest{Process: "a", Instances: 10000}, Limits: lim})
	if !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Error(), "would have 10001 executors") {
		t.Fatalf("the other group must count: %v", r.Err)
	}
}

func TestInstancesZeroIsRunning(t *testing.T) {
	s := newState()
	r := s.apply(submitCmd("idle", cluster.Process{Name: "p", Command: []string{"x"}, Instances: 0}))
	app := s.Apps[r.ID]
	if app.State != cluster.AppRunning || app.Executors == nil || len(app.Executors) != 0 {
		t.Fatalf("instances = 0: state %s, executors %v; want RUNNING with []", app.State, app.Executors)
	}
	s.apply(&command{Op: opScale, App: r.ID, Scale: &cluster.ScaleRequest{Instances: 1}})
	if app.State != cluster.AppPending {
		t.Fatalf("scaled to 1: %s, want PENDING until it runs", app.State)
	}
	s.apply(&command{Op: opScale, App: r.ID, Scale: &cluster.ScaleRequest{Instances: 0}})
	if app.State != cluster.AppRunning {
		t.Fatalf("scaled back to 0: %s, want RUNNING", app.State)
	}
	b, _ := json.Marshal(app)
	if !strings.Contains(string(b), `"executors":[]`) {
		t.Fatalf("JSON must list \"executors\": [], got %s", b)
	}
}

func TestExecutorIndexFollowsScale(t *testing.T) {
	s := newState()
	s.apply(submitCmd("a", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 3}, cluster.Process{Name: "api", Command: []string{"x"}, Instances: 2}))
	s.apply(submitCmd("b", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1}))
	for _, id := range []string{"1.web.0", "1.web.2", "1.api.1", "2.web.0"} {
		if e := s.executor(id); e == nil || e.ID != id {
			t.Fatalf("executor(%s) = %v", id, e)
		}
	}
	for _, id := range []string{"1.web.3", "3.web.0", "1", "", "1.web", "x.y.z"} {
		if e := s.executor(id); e != nil {
			t.Fatalf("executor(%q) found %s", id, e.ID)
		}
	}
	// Scaling rebuilds the slice (sorted by group, then index): the index
	// must follow, or a report would land on the wrong executor.
	s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Process: "web", Instances: 5}})
	s.apply(&command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Process: "api", Instances: 1}})
	for _, id := range []string{"1.web.4", "1.web.0", "1.api.0"} {
		if e := s.executor(id); e == nil || e.ID != id {
			t.Fatalf("after scale, executor(%s) = %v", id, e)
		}
	}
	if e := s.executor("1.api.1"); e != nil {
		t.Fatalf("a dropped executor is still found: %s", e.ID)
	}
	// A state restored from a snapshot has no index yet.
	b, _ := json.Marshal(s)
	r := newState()
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	if e := r.executor("1.web.3"); e == nil || e.ID != "1.web.3" {
		t.Fatalf("restored state: %v", e)
	}
}
