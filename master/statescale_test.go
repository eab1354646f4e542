package master

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

// A raft snapshot is encoded outside the state's lock (Persist runs while
// applies go on), so it must hold the state as of Snapshot, worker
// secrets included, whatever is applied before Persist.
func TestSnapshotIsTheStateAtSnapshotTime(t *testing.T) {
	f := &fsm{state: stateWithApps(3)}
	f.state.WorkerSecrets["w1"] = "hash-1"
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	before := f.state.Apps["1"].Executors[0]
	f.mu.Lock()
	f.state.apply(&command{Op: opKill, App: "1"})
	f.state.apply(&command{Op: opScale, App: "2", Scale: &cluster.ScaleRequest{Instances: 5}})
	f.state.apply(submitCmd("late", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1}))
	f.state.WorkerSecrets["w2"] = "hash-2"
	f.mu.Unlock()

	sink := &bufSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := &fsm{state: newState()}
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()))); err != nil {
		t.Fatal(err)
	}
	s := g.state
	if len(s.Apps) != 3 || s.Apps["1"].State == cluster.AppKilled || len(s.Apps["2"].Executors) != 2 {
		t.Fatalf("the snapshot took later applies: %d apps, app 1 %s, app 2 %d executors", len(s.Apps), s.Apps["1"].State, len(s.Apps["2"].Executors))
	}
	if got := s.Apps["1"].Executors[0]; got.State != before.State || got.PID != before.PID {
		t.Fatalf("executor in the snapshot = %+v, want %+v", got, before)
	}
	if s.WorkerSecrets["w1"] != "hash-1" || s.WorkerSecrets["w2"] != "" {
		t.Fatalf("worker secrets in the snapshot: %v, want only w1", s.WorkerSecrets)
	}
}

type bufSink struct {
	discardSink
	strings.Builder
}

func (b *bufSink) Write(p []byte) (int, error) { return b.Builder.Write(p) }

// GET /api/v1/apps answers every app in id order without parameters (as
// before paging), pages with ?limit=&after=, and refuses a bad limit.
func TestAppListPages(t *testing.T) {
	m := &Master{fsm: &fsm{state: stateWithApps(12)}}
	list := func(query string) ([]cluster.App, string, int) {
		t.Helper()
		rec := httptest.NewRecorder()
		m.handleApps(rec, httptest.NewRequest("GET", "/api/v1/apps"+query, nil))
		var apps []cluster.App
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &apps); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		}
		return apps, rec.Header().Get("Gear-Next-After"), rec.Code
	}
	ids := func(apps []cluster.App) string {
		var out []string
		for _, a := range apps {
			out = append(out, a.ID)
		}
		return strings.Join(out, ",")
	}
	all, next, code := list("")
	if code != 200 || ids(all) != "1,2,3,4,5,6,7,8,9,10,11,12" || next != "" {
		t.Fatalf("all apps: %d %q next %q", code, ids(all), next)
	}
	if len(all[0].Executors) != 2 || all[0].Executors[0].State != cluster.Running {
		t.Fatalf("app 1 answered as %+v", all[0])
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, next, code := list("?limit=5&after=" + after)
		if code != 200 || len(page) > 5 {
			t.Fatalf("page after %q: %d, %d apps", after, code, len(page))
		}
		got = append(got, ids(page))
		if next == "" {
			break
		}
		after = next
	}
	if strings.Join(got, ",") != "1,2,3,4,5,6,7,8,9,10,11,12" {
		t.Fatalf("pages: %q", got)
	}
	if page, next, _ := list("?after=9"); ids(page) != "10,11,12" || next != "" {
		t.Fatalf("after=9: %q next %q", ids(page), next)
	}
	if page, _, _ := list("?after=12"); len(page) != 0 {
		t.Fatalf("after the last app: %q", ids(page))
	}
	for _, bad := range []string{"?limit=-1", "?limit=x"} {
		if _, _, code := list(bad); code != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400", bad, code)
		}
	}
}

// The apps an app list encodes outside the lock are copies: an apply
// that changes an executor in place does not reach them.
func TestAppPageIsACopy(t *testing.T) {
	s := stateWithApps(2)
	page, _ := s.appPage(0, "")
	s.apply(&command{Op: opKill, App: "1"})
	s.Apps["1"].Executors[0].PID = 1
	if page[0].State == cluster.AppKilled || page[0].Executors[0].PID == 1 {
		t.Fatalf("the page changed with the state: %+v", page[0])
	}
}

// Submit finds a retried request through an index, also in a state that
// was restored from a snapshot (the index is not part of it).
func TestSubmitRetryAfterRestore(t *testing.T) {
	p := cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1}
	f := &fsm{state: newState()}
	for _, rid := range []string{"a", "b", "c"} {
		c := submitCmd("web", p)
		c.Submit.RequestID = rid
		f.state.apply(c)
	}
	snap, _ := f.Snapshot()
	sink := &bufSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := &fsm{state: newState()}
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()))); err != nil {
		t.Fatal(err)
	}
	for want, rid := range []string{"a", "b", "c"} {
		c := submitCmd("web", p)
		c.Submit.RequestID = rid
		if r := g.state.apply(c); r.Err != nil || r.ID != string(rune('1'+want)) {
			t.Fatalf("retry of %s: %+v, want app %d", rid, r, want+1)
		}
	}
	c := submitCmd("web", p)
	c.Submit.RequestID = "d"
	if r := g.state.apply(c); r.ID != "4" || len(g.state.Apps) != 4 {
		t.Fatalf("a new request: %+v, %d apps", r, len(g.state.Apps))
	}
	c = submitCmd("web", p)
	c.Submit.RequestID = "d"
	if r := g.state.apply(c); r.ID != "4" || len(g.state.Apps) != 4 {
		t.Fatalf("retry of a request submitted after the restore: %+v, %d apps", r, len(g.state.Apps))
	}
}

// The cluster-wide executor total that submit checks against
// gear.limits.executors is kept as apps come and go: after every kind of
// change it equals a count over the apps, and the limit still bites.
func TestLiveDesiredFollowsTheApps(t *testing.T) {
	s := newState()
	count := func() int {
		n := 0
		for _, a := range s.Apps {
			if a.State != cluster.AppKilled {
				n += desiredExecutors(a.Processes)
			}
		}
		return n
	}
	p := func(n int) cluster.Process { return cluster.Process{Name: "web", Command: []string{"x"}, Instances: n} }
	lim := Limits{}.withDefaults()
	lim.Executors = 10
	steps := []struct {
		name string
		c    *command
	}{
		{"submit 3", submitCmd("a", p(3))},
		{"submit 2", submitCmd("b", p(2))},
		{"scale", &command{Op: opScale, App: "1", Scale: &cluster.ScaleRequest{Instances: 5}}},
		{"update", &command{Op: opUpdate, App: "2", Submit: &cluster.SubmitRequest{Bundle: cluster.Bundle{Digest: "sha256:y"}, Processes: []cluster.Process{p(2)}}}},
		{"rollback", &command{Op: opRollback, App: "2", Rollback: &rollbackCmd{Version: 1}}},
		{"kill", &command{Op: opKill, App: "1"}},
		{"submit 4", submitCmd("c", p(4))},
	}
	for _, st := range steps {
		if st.c.Op == opSubmit || st.c.Op == opScale {
			st.c.Limits = &lim // the limit check counts before the change
		}
		if r := s.apply(st.c); r.Err != nil {
			t.Fatalf("%s: %v", st.name, r.Err)
		}
		if got, want := s.liveDesired(), count(); got != want {
			t.Fatalf("after %s: live total %d, want %d", st.name, got, want)
		}
	}
	over := submitCmd("d", p(5)) // 2 + 4 live, + 5 > 10
	over.Limits = &lim
	if r := s.apply(over); r.Err == nil || !strings.Contains(r.Err.Error(), "gear.limits.executors") {
		t.Fatalf("a submit over the cluster limit: %v", r.Err)
	}
	fits := submitCmd("e", p(4))
	fits.Limits = &lim
	if r := s.apply(fits); r.Err != nil {
		t.Fatalf("a submit within the cluster limit: %v", r.Err)
	}
}

// Persist and the app list encode outside the lock while entries are
// applied: under -race this finds anything the copies still share with the
// live state that apply writes into.
func TestEncodingBesideApplies(t *testing.T) {
	f := &fsm{state: stateWithApps(20)}
	m := &Master{fsm: f}
	w0 := f.state.Apps["1"].Executors[0].Worker
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			entry := &command{Op: opStatus, Worker: &cluster.Worker{ID: w0}, Reports: []cluster.ExecutorReport{{
				ID: "1.web.0", PID: 20000 + i, State: cluster.Running, CPUs: []int{i % 4}, LogTail: []string{"line"}, Generation: 1,
			}}}
			b, _ := json.Marshal(entry)
			f.Apply(entry2(uint64(i+1), b))
			if i == 100 {
				b, _ = json.Marshal(&command{Op: opScale, App: "2", Scale: &cluster.ScaleRequest{Instances: 3}})
				f.Apply(entry2(uint64(1000+i), b))
			}
		}
	}()
	for range 20 {
		snap, err := f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := snap.Persist(&bufSink{}); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		m.handleApps(rec, httptest.NewRequest("GET", "/api/v1/apps", nil))
		if rec.Code != 200 {
			t.Fatalf("app list: %d", rec.Code)
		}
	}
	<-done
}

func entry2(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
}
