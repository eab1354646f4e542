// Package logbridge carries the log lines of libraries that write plain
// text (memberlist's log.Logger, raft's hclog) into gear's slog logger at
// the level each line names, so that a library's warnings and errors reach
// the operator instead of being dropped at debug level.
//
// It is not a general log router: it only understands the "[LEVEL]" tag
// that the HashiCorp libraries put in front of every message.
package logbridge

import (
	"context"
	"log/slog"
	"strings"
)

// Writer is an io.Writer that logs each line written to it.
type Writer struct {
	Log *slog.Logger
	// From names the library ("memberlist", "raft"); it becomes the
	// record's "from" attribute.
	From string
}

// levels maps the libraries' tags to slog levels. memberlist writes
// "[ERR]", hclog "[ERROR]"; both write "[WARN]", "[INFO]", "[DEBUG]".
var levels = []struct {
	tag   string
	level slog.Level
}{
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
	{"[WARN]", slog.LevelWarn},
	{"[INFO]", slog.LevelInfo},
	{"[DEBUG]", slog.LevelDebug},
	{"[TRACE]", slog.LevelDebug},
}

// Parse returns the level a line names and its message without the
// timestamp and tag. A line without a tag is debug.
func Parse(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	for _, l := range levels {
		if i := strings.Index(line, l.tag); i >= 0 {
			return l.level, strings.TrimSpace(line[i+len(l.tag):])
		}
	}
	return slog.LevelDebug, line
}

func (w *Writer) Write(b []byte) (int, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		level, msg := Parse(line)
		w.Log.Log(context.Background(), level, msg, "from", w.From)
	}
	return len(b), nil
}
