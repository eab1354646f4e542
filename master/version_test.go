package master

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
)

// testFSM is an fsm whose error log goes to the returned buffer.
func testFSM() (*fsm, *bytes.Buffer) {
	var buf bytes.Buffer
	return &fsm{state: newState(), log: slog.New(slog.NewTextHandler(&buf, nil))}, &buf
}

func entry(index uint64, data string) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: []byte(data)}
}

func applyResult(t *testing.T, f *fsm, l *raft.Log) result {
	t.Helper()
	r, ok := f.Apply(l).(result)
	if !ok {
		t.Fatalf("Apply returned %T", f.Apply(l))
	}
	return r
}

func TestEncodeCommandStampsTheVersion(t *testing.T) {
	b, err := encodeCommand(command{Op: opKill, App: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["v"] != float64(commandVersion) {
		t.Fatalf("entry %s: want \"v\":%d", b, commandVersion)
	}
}

func TestCommandVersions(t *testing.T) {
	f, logged := testFSM()
	// An entry written before versions existed is version 1.
	old := `{"op":"submit","now":"2026-01-01T00:00:00Z","submit":{"name":"web","bundle":{"digest":"sha256:x"},"processes":[{"name":"web","command":["x"],"instances":1}]}}`
	if r := applyResult(t, f, entry(1, old)); r.Err != nil || r.ID != "1" {
		t.Fatalf("an entry without a version: %+v", r)
	}
	// One this master writes.
	b, err := encodeCommand(command{Op: opRestart, App: "1", Restart: &cluster.RestartRequest{}})
	if err != nil {
		t.Fatal(err)
	}
	if r := applyResult(t, f, entry(2, string(b))); r.Err != nil {
		t.Fatal(r.Err)
	}
	if f.stale() != nil {
		t.Fatal("stale after entries it knows")
	}

	// Newer ones: refused, not applied, and said so at error level naming
	// both versions, also when a field no longer decodes.
	newer := []string{
		fmt.Sprintf(`{"v":%d,"op":"kill","app":"1"}`, commandVersion+1),
		fmt.Sprintf(`{"v":%d,"op":"kill","app":{"id":"1","how":"gently"}}`, commandVersion+1),
		fmt.Sprintf(`{"v":%d,"op":"frobnicate","app":"1"}`, commandVersion+1),
	}
	newerV := fmt.Sprintf("command version %d", commandVersion+1)
	for i, data := range newer {
		logged.Reset()
		r := applyResult(t, f, entry(uint64(3+i), data))
		if !errors.Is(r.Err, ErrNewerVersion) {
			t.Fatalf("%s: %v, want ErrNewerVersion", data, r.Err)
		}
		for _, want := range []string{newerV, fmt.Sprintf("versions up to %d", commandVersion), "upgrade this master"} {
			if !strings.Contains(r.Err.Error(), want) {
				t.Fatalf("%s: error %q does not say %q", data, r.Err, want)
			}
		}
		if !strings.Contains(logged.String(), "level=ERROR") || !strings.Contains(logged.String(), newerV) {
			t.Fatalf("%s: not logged at error level with the versions: %s", data, logged)
		}
	}
	if st := f.state.Apps["1"].State; st == cluster.AppKilled {
		t.Fatal("a refused kill was applied")
	}
	if err := f.stale(); !errors.Is(err, ErrNewerVersion) || !strings.Contains(err.Error(), "entry 3 ") {
		t.Fatalf("stale() = %v, want the first refused entry", err)
	}
	// No snapshot while the refused entry must stay in the log.
	if _, err := f.Snapshot(); !errors.Is(err, ErrNewerVersion) {
		t.Fatalf("Snapshot after a refusal: %v, want ErrNewerVersion", err)
	}
	// Entries it knows still apply; unknown ops of a known version are
	// still refused as before.
	if r := applyResult(t, f, entry(6, `{"v":1,"op":"kill","app":"1"}`)); r.Err != nil || f.state.Apps["1"].State != cluster.AppKilled {
		t.Fatalf("a v1 kill after the refusal: %+v", r)
	}
	if r := applyResult(t, f, entry(7, `{"v":1,"op":"frobnicate"}`)); r.Err == nil || !strings.Contains(r.Err.Error(), `unknown operation "frobnicate"`) {
		t.Fatalf("unknown op: %v", r.Err)
	}
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.(*snapshot).encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshotFormats(t *testing.T) {
	f, _ := testFSM()
	f.state.apply(submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1}))
	b := snapshotBytes(t, f)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil || doc["format"] != float64(stateFormat) {
		t.Fatalf("snapshot %s: want \"format\":%d (%v)", b, stateFormat, err)
	}
	g, _ := testFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if g.state.Apps["1"] == nil || g.state.Format != stateFormat {
		t.Fatalf("restored %+v", g.state)
	}

	// A snapshot written before formats existed is format 1.
	delete(doc, "format")
	old, _ := json.Marshal(doc)
	g, _ = testFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(old))); err != nil || g.state.Apps["1"] == nil || g.state.Format != stateFormat {
		t.Fatalf("snapshot without a format: %v, %+v", err, g.state)
	}

	// A newer one: Restore fails and logs at error level; the state stays.
	for _, data := range []string{
		fmt.Sprintf(`{"format":%d,"apps":{},"workers":{},"next_app_id":7}`, stateFormat+1),
		fmt.Sprintf(`{"format":%d,"apps":{},"workers":{},"next_app_id":"seven"}`, stateFormat+1),
	} {
		g, logged := testFSM()
		g.state.NextAppID = 3
		err := g.Restore(io.NopCloser(strings.NewReader(data)))
		if !errors.Is(err, ErrNewerVersion) || !strings.Contains(err.Error(), fmt.Sprintf("state format %d", stateFormat+1)) || !strings.Contains(err.Error(), fmt.Sprintf("formats up to %d", stateFormat)) ||
			!strings.Contains(err.Error(), "upgrade this master") {
			t.Fatalf("%s: Restore = %v, want ErrNewerVersion naming both formats", data, err)
		}
		if !strings.Contains(logged.String(), "level=ERROR") {
			t.Fatalf("%s: not logged at error level: %s", data, logged)
		}
		if g.state.NextAppID != 3 {
			t.Fatalf("%s: a refused snapshot replaced the state", data)
		}
	}

	// Restoring a snapshot it can read ends a refusal: the snapshot holds
	// what the refused entry did.
	g, _ = testFSM()
	applyResult(t, g, entry(1, fmt.Sprintf(`{"v":%d,"op":"kill","app":"1"}`, commandVersion+1)))
	if g.stale() == nil {
		t.Fatal("not stale after a refusal")
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil || g.stale() != nil {
		t.Fatalf("Restore after a refusal: %v, stale %v", err, g.stale())
	}
}

// A real master (raft, WAL) that meets a newer entry refuses it, takes no
// snapshot, and applies it from its log once upgraded and restarted.
func TestRefusedEntryIsReplayedByTheUpgradedMaster(t *testing.T) {
	dir := t.TempDir()
	logged := &lockedWriter{w: &bytes.Buffer{}}
	port := 0 // the first start picks one; the restart keeps it (raft's membership is on disk)
	start := func() *Master {
		t.Helper()
		m, err := New(t.Context(), Options{IP: "127.0.0.1", Port: port, DataDir: dir, FailoverTimeout: 2 * time.Second,
			Logger: slog.New(slog.NewTextHandler(logged, nil))})
		if err != nil {
			t.Fatal(err)
		}
		port = m.opts.Port
		deadline := time.Now().Add(20 * time.Second)
		for !m.isLeader() {
			if time.Now().After(deadline) {
				t.Fatal("the lone master did not become leader")
			}
			time.Sleep(20 * time.Millisecond)
		}
		return m
	}
	m := start()
	if _, err := m.apply(*submitCmd("web", cluster.Process{Name: "web", Command: []string{"x"}, Instances: 1})); err != nil {
		t.Fatal(err)
	}
	fut := m.raft.raft.Apply([]byte(fmt.Sprintf(`{"v":%d,"op":"kill","app":"1"}`, commandVersion+1)), 5*time.Second)
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if r, _ := fut.Response().(result); !errors.Is(r.Err, ErrNewerVersion) {
		t.Fatalf("a v2 entry on a v1 master: %+v, want ErrNewerVersion", r)
	}
	if err := m.raft.raft.Snapshot().Error(); err == nil {
		t.Fatal("a snapshot was taken after a refused entry: the upgraded master could not replay it")
	}
	if out := logged.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "upgrade this master") {
		t.Fatalf("the refusal was not logged at error level:\n%s", out)
	}
	m.fsm.read(func(s *State) {
		if s.Apps["1"].State == cluster.AppKilled {
			t.Fatal("the refused kill was applied")
		}
	})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	knownCommandVersion = commandVersion + 1 // the upgrade
	t.Cleanup(func() { knownCommandVersion = commandVersion })
	m = start()
	defer m.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		killed := false
		m.fsm.read(func(s *State) { killed = s.Apps["1"] != nil && s.Apps["1"].State == cluster.AppKilled })
		if killed && m.fsm.stale() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upgraded master did not apply the kill from its log (stale: %v)", m.fsm.stale())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedWriter lets raft's and the master's goroutines share a log buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
