package master

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// These tests step the scheduling core the way etcd's raft tests step a
// node: each step changes the state the way the cluster would (a submit, a
// worker's report, a restart), then runs one round of schedule on (state,
// view), compares the commands with the expected ones, and applies them to
// the state before the next step. No master, no clock, no goroutine.

type schedStep struct {
	name     string
	do       []func(s *State) // what happens before the round
	alive    []string         // workers heard from within the timeout
	eligible []string         // alive in the gossip pool; nil = the alive ones
	at       time.Duration    // the leader's clock for the round (ClusterView.Now), from the zero time
	want     []string         // the round's commands, see describe
	check    func(t *testing.T, s *State)
}

func runSchedule(t *testing.T, steps []schedStep) *State {
	t.Helper()
	s := newState()
	for i, st := range steps {
		for _, do := range st.do {
			do(s)
		}
		el := st.eligible
		if el == nil {
			el = st.alive
		}
		view := viewOf(alive(st.alive...), eligible(el...))
		view.Now = time.Time{}.Add(st.at)
		before, _ := json.Marshal(s)
		cmds := schedule(s, view)
		if after, _ := json.Marshal(s); string(after) != string(before) {
			t.Fatalf("step %d (%s): schedule changed the state it was given", i+1, st.name)
		}
		if got := describe(cmds); !slices.Equal(got, st.want) {
			t.Fatalf("step %d (%s):\n got  %q\n want %q", i+1, st.name, got, st.want)
		}
		for _, c := range cmds {
			if r := s.apply(&c); r.Err != nil {
				t.Fatalf("step %d (%s): applying %s: %v", i+1, st.name, c.Op, r.Err)
			}
		}
		if st.check != nil {
			st.check(t, s)
		}
	}
	return s
}

// describe renders commands compactly: "unassign E...", "assign E@W[cpus]
// E waits (no worker|no room)...", "bump E".
func describe(cmds []command) []string {
	out := []string{}
	for _, c := range cmds {
		switch c.Op {
		case opUnassign:
			out = append(out, "unassign "+strings.Join(c.Lost, " "))
		case opAssign:
			var parts []string
			for _, a := range c.Assign {
				switch {
				case a.Error == "" && a.Replace:
					parts = append(parts, fmt.Sprintf("%s@%s%v(replacement)", a.Executor, a.Worker, a.CPUs))
				case a.Error == "":
					parts = append(parts, fmt.Sprintf("%s@%s%v", a.Executor, a.Worker, a.CPUs))
				case strings.HasPrefix(a.Error, "waiting for a worker"):
					parts = append(parts, a.Executor+" waits (no worker)")
				default:
					parts = append(parts, a.Executor+" waits (no room)")
				}
			}
			out = append(out, "assign "+strings.Join(parts, " "))
		case opBump:
			out = append(out, "bump "+c.Bump)
		case opReschedule, opPromote, opEvict, opUnplace:
			out = append(out, c.Op+" "+strings.Join(c.Lost, " "))
		case opRollback:
			out = append(out, "rollback "+c.App)
		default:
			out = append(out, "unexpected "+c.Op)
		}
	}
	return out
}

func alive(ids ...string) map[string]bool    { return set(ids) }
func eligible(ids ...string) map[string]bool { return set(ids) }

func set(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func viewOf(alive, eligible map[string]bool) ClusterView {
	return ClusterView{Alive: alive, Eligible: eligible}
}

// Events of the cluster, as the replicated commands that carry them.

func register(id string, cpus ...int) func(*State) {
	return func(s *State) {
		mustApply(s, &command{Op: opWorker, Worker: &cluster.Worker{ID: id, Addr: id + ":1", CPUs: append([]int{}, cpus...)}})
	}
}

func submit(name string, p cluster.Process) func(*State) {
	if p.Name == "" {
		p.Name = name
	}
	p.Command = []string{"./" + name}
	return func(s *State) { mustApply(s, submitCmd(name, p)) }
}

// running: every worker reports each of its executors RUNNING at the
// generation it was asked for.
func running(s *State) {
	reportAll(s, func(e cluster.Executor) cluster.ExecutorState { return cluster.Running })
}

// report: the worker of executor id reports it in state st.
func report(id string, st cluster.ExecutorState) func(*State) {
	return func(s *State) {
		reportAll(s, func(e cluster.Executor) cluster.ExecutorState {
			if e.ID == id {
				return st
			}
			return e.State
		})
	}
}

func reportAll(s *State, state func(cluster.Executor) cluster.ExecutorState) {
	by := map[string][]cluster.ExecutorReport{}
	for _, id := range sortedAppIDs(s) {
		for _, e := range s.Apps[id].Executors {
			if e.Worker != "" {
				by[e.Worker] = append(by[e.Worker], cluster.ExecutorReport{ID: e.ID, PID: 100, State: state(e), Generation: e.Generation, CPUs: e.CPUs})
			}
			if r := e.Replacement; r != nil {
				by[r.Worker] = append(by[r.Worker], cluster.ExecutorReport{ID: e.ID, PID: 200, State: state(*r), Generation: r.Generation, CPUs: r.CPUs})
			}
		}
	}
	for w, reps := range by {
		mustApply(s, &command{Op: opStatus, Worker: &cluster.Worker{ID: w}, Reports: reps})
	}
}

func restart(app string) func(*State) {
	return func(s *State) {
		mustApply(s, &command{Op: opRestart, App: app, Restart: &cluster.RestartRequest{}})
	}
}

func kill(app string) func(*State) {
	return func(s *State) { mustApply(s, &command{Op: opKill, App: app}) }
}

// stopped: the workers report that they no longer run the killed app's
// executors.
func stopped(app string) func(*State) {
	return func(s *State) {
		for _, e := range s.Apps[app].Executors {
			if e.Worker != "" {
				mustApply(s, &command{Op: opStatus, Worker: &cluster.Worker{ID: e.Worker}, Gone: []string{e.ID}})
			}
		}
	}
}

func mustApply(s *State, c *command) {
	if r := s.apply(c); r.Err != nil {
		panic(fmt.Sprintf("%s: %v", c.Op, r.Err))
	}
}

func wantExecutor(id, worker string, state cluster.ExecutorState) func(t *testing.T, s *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		e := s.executor(id)
		if e == nil || e.Worker != worker || e.State != state {
			t.Fatalf("executor %s = %+v, want on %q in state %s", id, e, worker, state)
		}
	}
}

func TestSchedule(t *testing.T) {
	web := cluster.Process{Instances: 2, CPUs: 1}
	cases := []struct {
		name  string
		steps []schedStep
	}{
		{"a worker dies: its executors are lost and placed elsewhere", []schedStep{
			{name: "placed where most cores are free", do: []func(*State){register("a", 0, 1), register("b", 0, 1), submit("web", web)},
				alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}},
			{name: "running: nothing to do", do: []func(*State){running}, alive: []string{"a", "b"}, want: []string{}},
			{name: "a leaves the gossip pool but heartbeats: nothing moves", alive: []string{"a", "b"}, eligible: []string{"b"}, want: []string{}},
			{name: "a stops heartbeating", alive: []string{"b"}, want: []string{"unassign 1.web.0", "assign 1.web.0@b[1]"},
				check: wantExecutor("1.web.0", "b", cluster.Starting)},
			{name: "settled on b", do: []func(*State){running}, alive: []string{"b"}, want: []string{},
				check: wantExecutor("1.web.0", "b", cluster.Running)},
		}},
		{"a lost executor with nowhere to go waits, and is placed when a worker returns", []schedStep{
			{name: "placed", do: []func(*State){register("a", 0), register("b", 0), submit("web", web), running},
				alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}},
			{name: "a dies, b is full", do: []func(*State){running}, alive: []string{"b"},
				want: []string{"unassign 1.web.0", "assign 1.web.0 waits (no room)"}, check: wantExecutor("1.web.0", "", cluster.Lost)},
			{name: "the reason is noted once", alive: []string{"b"}, want: []string{}},
			{name: "a is back", alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0]"}, check: wantExecutor("1.web.0", "a", cluster.Starting)},
		}},
		{"a killed app's executors on a lost worker stop and are not placed", []schedStep{
			{name: "placed", do: []func(*State){register("a", 0), register("b", 0), submit("web", web)},
				alive: []string{"a", "b"}, want: []string{"assign 1.web.0@a[0] 1.web.1@b[0]"}},
			{name: "killed, then a dies", do: []func(*State){running, kill("1")}, alive: []string{"b"},
				want: []string{"unassign 1.web.0"}, check: wantExecutor("1.web.0", "", cluster.Stopped)},
			{name: "nothing more", alive: []string{"b"}, want: []string{}},
		}},
		{"rolling restart: one executor at a time, the next only when all settled", []schedStep{
			{name: "placed", do: []func(*State){register("a", 0, 1, 2, 3), submit("web", cluster.Process{Instances: 3})},
				alive: []string{"a"}, want: []string{"assign 1.web.0@a[] 1.web.1@a[] 1.web.2@a[]"}},
			{name: "restart while one is in backoff: wait", do: []func(*State){running, report("1.web.1", cluster.Backoff), restart("1")},
				alive: []string{"a"}, want: []string{}},
			{name: "all running: the first", do: []func(*State){running}, alive: []string{"a"}, want: []string{"bump 1.web.0"}},
			{name: "the first has not restarted yet: wait", alive: []string{"a"}, want: []string{}},
			{name: "the first runs the new generation: the second", do: []func(*State){running}, alive: []string{"a"}, want: []string{"bump 1.web.1"}},
			{name: "the third", do: []func(*State){running}, alive: []string{"a"}, want: []string{"bump 1.web.2"}},
			{name: "done", do: []func(*State){running}, alive: []string{"a"}, want: []string{}},
		}},
		{"pinned cores are never double-booked", []schedStep{
			{name: "two apps fill the worker", do: []func(*State){register("a", 0, 1, 2, 3),
				submit("p", cluster.Process{Instances: 1, CPUs: 2}), submit("q", cluster.Process{Instances: 2, CPUs: 1})},
				alive: []string{"a"}, want: []string{"assign 1.p.0@a[0 1] 2.q.0@a[2] 2.q.1@a[3]"}},
			{name: "a third has no room", do: []func(*State){running, submit("r", cluster.Process{Instances: 1, CPUs: 1})},
				alive: []string{"a"}, want: []string{"assign 3.r.0 waits (no room)"}},
			{name: "killed but still stopping: its cores stay taken", do: []func(*State){kill("1")}, alive: []string{"a"}, want: []string{}},
			{name: "stopped: its cores are free", do: []func(*State){stopped("1")}, alive: []string{"a"}, want: []string{"assign 3.r.0@a[0]"}},
		}},
		{"shared cores: shared executors share, least shared first; exclusive ones never share", []schedStep{
			{name: "exclusive first, then shared on the rest", do: []func(*State){register("a", 0, 1, 2),
				submit("x", cluster.Process{Instances: 1, CPUs: 1}), submit("s", cluster.Process{Instances: 3, CPUs: 1, Shared: true})},
				alive: []string{"a"}, want: []string{"assign 1.x.0@a[0] 2.s.0@a[1] 2.s.1@a[2] 2.s.2@a[1]"}},
			{name: "no core left for another exclusive one", do: []func(*State){submit("y", cluster.Process{Instances: 1, CPUs: 1})},
				alive: []string{"a"}, want: []string{"assign 3.y.0 waits (no room)"}},
		}},
		{"no worker: one note, placed once a worker is alive and in the pool", []schedStep{
			{name: "nobody", do: []func(*State){submit("web", cluster.Process{Instances: 1})}, want: []string{"assign 1.web.0 waits (no worker)"}},
			{name: "noted once", want: []string{}},
			{name: "registered and heartbeating, not yet in the pool", do: []func(*State){register("a", 0)},
				alive: []string{"a"}, eligible: []string{}, want: []string{}},
			{name: "in the pool but its heartbeats stopped", alive: []string{}, eligible: []string{"a"}, want: []string{}},
			{name: "alive and in the pool", alive: []string{"a"}, want: []string{"assign 1.web.0@a[]"}},
		}},
		{"unpinned executors spread by count, pinned ones by free cores", []schedStep{
			{name: "spread", do: []func(*State){register("a", 0, 1, 2, 3), register("b", 0),
				submit("chat", cluster.Process{Instances: 4})},
				alive: []string{"a", "b"}, want: []string{"assign 1.chat.0@a[] 1.chat.1@b[] 1.chat.2@a[] 1.chat.3@b[]"}},
			{name: "pinned go where most cores are free", do: []func(*State){submit("db", cluster.Process{Instances: 2, CPUs: 1})},
				alive: []string{"a", "b"}, want: []string{"assign 2.db.0@a[0] 2.db.1@a[1]"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runSchedule(t, tc.steps) })
	}
}

func TestNoRoomMessages(t *testing.T) {
	p := cluster.Process{Name: "web", CPUs: 2}
	if got := noRoomMessage(p, true); !strings.Contains(got, "none is registered and alive") || !strings.Contains(got, "bin/worker") {
		t.Fatalf("no workers: %q", got)
	}
	if got := noRoomMessage(p, false); !strings.Contains(got, `2 free core(s) for process group "web"`) || !strings.Contains(got, "mark it shared") {
		t.Fatalf("no room: %q", got)
	}
}

// Random clusters stepped for many rounds (seeded, so a failure replays):
// whatever happens, no exclusive core is held twice, executors get only
// cores of their worker, new placements go only to usable workers, and an
// executor on a worker that is not alive is unassigned.
func TestScheduleInvariants(t *testing.T) {
	placed := 0 // exclusive cores checked, so the test is not vacuous
	for seed := int64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 0))
		s := newState()
		workers := []string{"a", "b", "c", "d"}
		for _, w := range workers {
			register(w, rng.Perm(8)[:1+rng.IntN(6)]...)(s)
		}
		for round := range 40 {
			switch rng.IntN(5) {
			case 0:
				name := fmt.Sprintf("p%d", round)
				submit(name, cluster.Process{Instances: rng.IntN(4), CPUs: rng.IntN(3), Shared: rng.IntN(3) == 0})(s)
			case 1:
				running(s)
			case 2:
				if len(s.Apps) > 0 {
					id := sortedAppIDs(s)[rng.IntN(len(s.Apps))]
					if s.Apps[id].State != cluster.AppKilled {
						kill(id)(s)
						stopped(id)(s)
					}
				}
			}
			view := ClusterView{Alive: map[string]bool{}, Eligible: map[string]bool{}}
			for _, w := range workers {
				view.Alive[w] = rng.IntN(4) > 0
				view.Eligible[w] = rng.IntN(5) > 0
			}
			cmds := schedule(s, view)
			for _, c := range cmds {
				for _, a := range c.Assign {
					if a.Error == "" && !view.usable(a.Worker) {
						t.Fatalf("seed %d round %d: %s placed on %s, which is not alive and eligible", seed, round, a.Executor, a.Worker)
					}
				}
				mustApply(s, &c)
			}
			exclusive := map[string]string{} // worker/core -> executor
			shared := map[string]string{}
			for _, id := range sortedAppIDs(s) {
				app := s.Apps[id]
				for _, e := range app.Executors {
					if e.Worker == "" {
						continue
					}
					if !view.Alive[e.Worker] {
						t.Fatalf("seed %d round %d: %s stays on %s, which is not alive", seed, round, e.ID, e.Worker)
					}
					p := app.Processes[slices.IndexFunc(app.Processes, func(p cluster.Process) bool { return p.Name == e.Process })]
					if len(e.CPUs) != p.CPUs {
						t.Fatalf("seed %d round %d: %s holds cores %v, wants %d", seed, round, e.ID, e.CPUs, p.CPUs)
					}
					for _, c := range e.CPUs {
						if !slices.Contains(s.Workers[e.Worker].CPUs, c) {
							t.Fatalf("seed %d round %d: %s holds core %d that %s does not have", seed, round, e.ID, c, e.Worker)
						}
						k := fmt.Sprintf("%s/%d", e.Worker, c)
						if other, ok := exclusive[k]; ok {
							t.Fatalf("seed %d round %d: core %s held by %s and %s", seed, round, k, other, e.ID)
						}
						if p.Shared {
							shared[k] = e.ID
							continue
						}
						if other, ok := shared[k]; ok {
							t.Fatalf("seed %d round %d: exclusive core %s also held by shared %s", seed, round, k, other)
						}
						exclusive[k] = e.ID
						placed++
					}
				}
			}
		}
	}
	if placed < 100 {
		t.Fatalf("only %d exclusive core holdings checked: the random clusters place too little", placed)
	}
	t.Logf("%d exclusive core holdings checked", placed)
}

// Placement counts memory as it counts cores: a worker whose memory is
// held takes no more executors with a memory limit.
func TestScheduleMemory(t *testing.T) {
	regMem := func(id string, mem int64) func(*State) {
		return func(s *State) {
			mustApply(s, &command{Op: opWorker, Worker: &cluster.Worker{ID: id, Addr: id + ":1", CPUs: []int{0, 1, 2, 3}, Memory: mem}})
		}
	}
	big := cluster.Process{Instances: 3, Memory: 600 << 20}
	runSchedule(t, []schedStep{
		{name: "1GiB each: one 600MiB instance per worker, the third waits", do: []func(*State){regMem("a", 1<<30), regMem("b", 1<<30), submit("big", big)},
			alive: []string{"a", "b"}, want: []string{"assign 1.big.0@a[] 1.big.1@b[] 1.big.2 waits (no room)"},
			check: func(t *testing.T, s *State) {
				if e := s.executor("1.big.2"); !strings.Contains(e.LastError, "bytes of memory") {
					t.Fatalf("the reason %q does not name memory", e.LastError)
				}
			}},
		{name: "a worker that does not count memory takes it", do: []func(*State){regMem("c", 0)},
			alive: []string{"a", "b", "c"}, want: []string{"assign 1.big.2@c[]"}},
		{name: "unlimited processes are not counted", do: []func(*State){submit("small", cluster.Process{Instances: 2})},
			alive: []string{"a", "b", "c"}, want: []string{"assign 2.small.0@a[] 2.small.1@b[]"}},
	})
}
