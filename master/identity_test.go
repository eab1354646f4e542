package master

import (
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/gossip"
)

func workerCmd(id, hash string) *command {
	return &command{Op: opWorker, Worker: &cluster.Worker{ID: id, Addr: "h:1", CPUs: []int{0}, BootID: "b1"}, SecretHash: hash}
}

func TestWorkerSecretReplicatedAsHash(t *testing.T) {
	s := newState()
	h := secretHash("s3cret")
	if h == "s3cret" || len(h) != 64 {
		t.Fatalf("secretHash = %q, want a hex SHA-256", h)
	}
	if r := s.apply(workerCmd("w1", h)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if s.WorkerSecrets["w1"] != h {
		t.Fatalf("state keeps %q, want the hash", s.WorkerSecrets["w1"])
	}
	// Another secret under the same id: refused, the registration stands.
	r := s.apply(&command{Op: opWorker, Worker: &cluster.Worker{ID: "w1", Addr: "evil:1", BootID: "b2"}, SecretHash: secretHash("other")})
	if !errors.Is(r.Err, ErrForbidden) || !strings.Contains(r.Err.Error(), "gear workers remove w1") {
		t.Fatalf("re-registration with another secret: %v, want ErrForbidden naming the fix", r.Err)
	}
	if s.Workers["w1"].Addr != "h:1" || s.WorkerSecrets["w1"] != h {
		t.Fatalf("a refused registration changed the worker: %+v %q", s.Workers["w1"], s.WorkerSecrets["w1"])
	}
	// The same secret re-registers (new address or boot id).
	if r := s.apply(&command{Op: opWorker, Worker: &cluster.Worker{ID: "w1", Addr: "h:2", BootID: "b3"}, SecretHash: h}); r.Err != nil {
		t.Fatal(r.Err)
	}
	// A worker registered before secrets existed takes the first one.
	s.Workers["old"] = &cluster.Worker{ID: "old"}
	if err := s.checkSecret("old", secretHash("x")); err != nil {
		t.Fatalf("a worker without a stored secret: %v", err)
	}
	if err := s.checkSecret("w1", secretHash("nope")); !errors.Is(err, ErrForbidden) {
		t.Fatalf("checkSecret(wrong) = %v", err)
	}
}

func TestForgetWorkerUnplacesExecutors(t *testing.T) {
	s := newState()
	s.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 2}))
	s.apply(submitCmd("old", cluster.Process{Name: "p", Command: []string{"x"}, Instances: 1}))
	s.apply(workerCmd("w1", secretHash("a")))
	s.apply(workerCmd("w2", secretHash("b")))
	s.apply(&command{Op: opAssign, Assign: []assignment{
		{Executor: "1.web.0", Worker: "w1", WorkerAddr: "h:1", CPUs: []int{0}},
		{Executor: "1.web.1", Worker: "w2", WorkerAddr: "h:2", CPUs: []int{0}},
		{Executor: "2.p.0", Worker: "w1", WorkerAddr: "h:1", CPUs: []int{1}},
	}})
	s.apply(&command{Op: opKill, App: "2"})
	if r := s.apply(&command{Op: opForget, Forget: []string{"w1"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, ok := s.Workers["w1"]; ok {
		t.Fatal("w1 still listed")
	}
	if _, ok := s.WorkerSecrets["w1"]; ok {
		t.Fatal("w1's secret hash still kept")
	}
	e := s.executor("1.web.0")
	if e.Worker != "" || e.WorkerAddr != "" || e.State != cluster.Lost || len(e.CPUs) != 0 {
		t.Fatalf("executor of the forgotten worker: %+v, want unplaced and LOST", e)
	}
	if e := s.executor("1.web.1"); e.Worker != "w2" {
		t.Fatalf("executor of another worker moved: %+v", e)
	}
	if e := s.executor("2.p.0"); e.Worker != "" || e.State != cluster.Stopped {
		t.Fatalf("executor of a killed app on the forgotten worker: %+v, want STOPPED", e)
	}
	// A new machine may now register under the id with its own secret.
	if r := s.apply(workerCmd("w1", secretHash("new"))); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func TestLongDead(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	ws := map[string]*cluster.Worker{"a": {ID: "a"}, "b": {ID: "b"}, "c": {ID: "c"}, "d": {ID: "d"}}
	seen := map[string]time.Time{"a": now.Add(-25 * time.Hour), "b": now.Add(-time.Hour), "c": now.Add(-24 * time.Hour)}
	if got := longDead(ws, seen, now, 24*time.Hour); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("longDead = %v, want [a c] (d was never judged by this leader)", got)
	}
	if got := longDead(ws, seen, now, -1); got != nil {
		t.Fatalf("forget-after off: %v", got)
	}
}

func TestGossipState(t *testing.T) {
	w := &cluster.Worker{ID: "w1", Addr: "127.0.0.1:5000", BootID: "boot1"}
	member := gossip.Member{Name: gossip.WorkerName("w1"), State: "alive", Meta: gossip.Meta{Role: gossip.RoleWorker, API: "127.0.0.1:5000", Boot: "boot1"}}
	cases := []struct {
		name string
		mod  func(m *gossip.Member)
		want string
	}{
		{"alive member", func(*gossip.Member) {}, "alive"},
		{"dead member", func(m *gossip.Member) { m.State = "dead" }, "dead"},
		{"other boot (older incarnation)", func(m *gossip.Member) { m.Meta.Boot = "boot0" }, ""},
		{"other API address", func(m *gossip.Member) { m.Meta.API = "127.0.0.9:1" }, ""},
		{"master role", func(m *gossip.Member) { m.Meta.Role = gossip.RoleMaster }, ""},
		{"other name", func(m *gossip.Member) { m.Name = "worker@evil" }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := member
			tc.mod(&m)
			if got := gossipState(map[string]gossip.Member{m.Name: m}, w); got != tc.want {
				t.Fatalf("gossipState = %q, want %q", got, tc.want)
			}
		})
	}
	if got := gossipState(map[string]gossip.Member{}, w); got != "" {
		t.Fatalf("unknown to the pool: %q", got)
	}
}

// inPool makes workers alive members of m's (fake) gossip pool.
func inPool(m *Master, ws ...*cluster.Worker) {
	var members []gossip.Member
	for _, w := range ws {
		members = append(members, gossip.Member{Name: gossip.WorkerName(w.ID), State: "alive",
			Meta: gossip.Meta{Role: gossip.RoleWorker, API: w.Addr, Boot: w.BootID}})
	}
	m.members = func() []gossip.Member { return members }
}

// A worker that only heartbeats (anyone with the token can) gets nothing
// placed on it, however many cores it claims.
func TestPlaceOnlyOnPoolMembers(t *testing.T) {
	s := newState()
	s.Workers["real"] = &cluster.Worker{ID: "real", Addr: "r:1", CPUs: []int{0}, BootID: "b"}
	s.Workers["evil"] = &cluster.Worker{ID: "evil", Addr: "e:1", CPUs: []int{0, 1, 2, 3, 4, 5, 6, 7}, BootID: "x"}
	s.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 3, CPUs: 1}))
	as := place(s, viewOf(alive("real", "evil"), eligible("real")))
	placed := 0
	for _, a := range as {
		if a.Worker == "evil" {
			t.Fatalf("placed on a worker outside the gossip pool: %+v", as)
		}
		if a.Error == "" {
			placed++
		}
	}
	if placed != 1 {
		t.Fatalf("want 1 executor on the real worker's one core, got %+v", as)
	}
}

// The daemon's view: alive by the heartbeat clock, eligible by the gossip
// pool (the registered incarnation only); a worker that heartbeats but is
// not in the pool is noted for the log.
func TestClusterViewFromHeartbeatsAndPool(t *testing.T) {
	m := &Master{opts: Options{FailoverTimeout: time.Minute}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		lastSeen: map[string]time.Time{}, unpooled: map[string]unpooledNote{}}
	now := time.Now()
	s := newState()
	s.Workers["real"] = &cluster.Worker{ID: "real", Addr: "r:1", CPUs: []int{0}, BootID: "b"}
	s.Workers["evil"] = &cluster.Worker{ID: "evil", Addr: "e:1", CPUs: []int{0}, BootID: "x"}
	s.Workers["dead"] = &cluster.Worker{ID: "dead", Addr: "d:1", CPUs: []int{0}, BootID: "d"}
	m.lastSeen["real"], m.lastSeen["evil"], m.lastSeen["dead"] = now, now, now.Add(-time.Hour)
	inPool(m, s.Workers["real"], s.Workers["dead"])
	view, unpooled := m.clusterView(s, now)
	want := viewOf(alive("real", "evil"), eligible("real", "dead"))
	if !maps.Equal(view.Alive, want.Alive) || !maps.Equal(view.Eligible, want.Eligible) {
		t.Fatalf("view = %+v, want %+v", view, want)
	}
	if len(unpooled) != 1 || unpooled[0].ID != "evil" {
		t.Fatalf("unpooled = %+v, want the worker outside the pool", unpooled)
	}
	m.noteUnpooled(unpooled, now)
	if _, ok := m.unpooled["evil"]; !ok {
		t.Fatal("the worker outside the pool was not noted for the log")
	}
}

func TestDecodeBodyStrict(t *testing.T) {
	limit := bodyLimit{max: 64, what: "the API's limit for JSON requests"}
	cases := []struct {
		name   string
		body   string
		chunk  bool // no Content-Length
		status int
		want   string
	}{
		{"one object", `{"instances":1}`, false, 200, ""},
		{"trailing whitespace", "{\"instances\":1}\n \n", false, 200, ""},
		{"trailing garbage", `{"instances":1} garbage`, false, 400, "after the JSON value"},
		{"two objects", `{"instances":1}{"instances":2}`, false, 400, "more than one JSON value"},
		{"unknown field", `{"instancs":1}`, false, 400, "unknown field"},
		{"declared over the limit", `{"instances":1,"process":"` + strings.Repeat("x", 100) + `"}`, false, 413, "request body over 64 (the API's limit for JSON requests)"},
		{"streamed over the limit", `{"instances":1,"process":"` + strings.Repeat("x", 100) + `"}`, true, 413, "request body over 64"},
		{"garbage streamed over the limit", `{"instances":1}` + strings.Repeat(" ", 100) + "x", true, 413, "request body over 64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := limit.wrap(func(w http.ResponseWriter, r *http.Request) {
				var req cluster.ScaleRequest
				if err := decodeBody(r, &req); err != nil {
					writeError(w, err)
					return
				}
				writeJSON(w, req)
			})
			r := httptest.NewRequest("POST", "/api/v1/apps/1/scale", strings.NewReader(tc.body))
			if tc.chunk {
				r.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h(rec, r)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%d %s, want %d with %q", rec.Code, rec.Body, tc.status, tc.want)
			}
		})
	}
}
