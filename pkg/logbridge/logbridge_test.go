package logbridge

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"2026/12/01 10:00:00 [ERR] memberlist: failed to decrypt packet", slog.LevelError, "memberlist: failed to decrypt packet"},
		{"2026-12-01T10:00:00.000Z [ERROR] raft: failed to append", slog.LevelError, "raft: failed to append"},
		{"[WARN] memberlist: refuting a suspect message\n", slog.LevelWarn, "memberlist: refuting a suspect message"},
		{"2026-12-01T10:00:00.000Z [INFO]  raft: entering follower state", slog.LevelInfo, "raft: entering follower state"},
		{"[DEBUG] memberlist: stream connection", slog.LevelDebug, "memberlist: stream connection"},
		{"no tag at all", slog.LevelDebug, "no tag at all"},
	} {
		level, msg := Parse(tc.line)
		if level != tc.level || msg != tc.msg {
			t.Errorf("Parse(%q) = %v %q, want %v %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
}

func TestWriterLogsEachLineAtItsLevel(t *testing.T) {
	var buf bytes.Buffer
	w := &Writer{Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), From: "memberlist"}
	if _, err := w.Write([]byte("[WARN] memberlist: one\n[ERR] memberlist: two\n")); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&buf)
	var got []map[string]any
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if len(got) != 2 || got[0]["level"] != "WARN" || got[1]["level"] != "ERROR" || got[1]["from"] != "memberlist" || got[1]["msg"] != "memberlist: two" {
		t.Fatalf("records = %v", got)
	}
}
