package logbridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestHCLogFieldsAndLevel: raft's records arrive with their fields as slog
// attributes, at the slog handler's level (gear.log.level).
func TestHCLogFieldsAndLevel(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var h hclog.Logger = NewHCLog(log, "raft")
	h = h.Named("snapshot").With("id", "node1")
	h.Debug("not shown at info", "x", 1)
	h.Trace("not shown either")
	h.Info("entering follower state", "follower", "127.0.0.1:3000", "leader-address", "", "term", uint64(7))
	h.Error("failed to appendEntries", "peer", "127.0.0.2:3000", "error", errors.New("connection refused"), "servers", hclog.Fmt("%+v", []int{1, 2}))
	if h.IsDebug() || !h.IsInfo() || h.GetLevel() != hclog.Info {
		t.Errorf("IsDebug %v IsInfo %v level %v: want the handler's level (info)", h.IsDebug(), h.IsInfo(), h.GetLevel())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 records (debug and trace filtered), got:\n%s", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"level": "INFO", "msg": "entering follower state", "from": "raft", "logger": "raft.snapshot",
		"id": "node1", "follower": "127.0.0.1:3000", "term": float64(7)}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (record %s)", k, rec[k], v, lines[0])
		}
	}
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["level"] != "ERROR" || rec["error"] != "connection refused" || rec["peer"] != "127.0.0.2:3000" || rec["servers"] != "[1 2]" {
		t.Errorf("error record: %s", lines[1])
	}

	buf.Reset()
	debug := NewHCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft")
	debug.Debug("shown at debug", "k", "v")
	if !strings.Contains(buf.String(), `"k":"v"`) || !debug.IsDebug() {
		t.Errorf("with gear.log.level = debug: %q", buf.String())
	}
}
