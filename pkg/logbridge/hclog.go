package logbridge

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is hclog's trace level in slog terms: below debug, shown only
// by a handler set lower than slog.LevelDebug.
const LevelTrace = slog.LevelDebug - 4

// HCLog is an hclog.Logger that hands every record to a slog.Logger, with
// the library's key/value pairs as slog attributes (not flattened into the
// message) and hclog's levels mapped onto slog's. Its level is the slog
// handler's: raft logs at debug exactly when gear.log.level = debug.
type HCLog struct {
	log     *slog.Logger
	name    string
	from    string // the "from" attribute: the top-level library name
	implied []any
}

var _ hclog.Logger = (*HCLog)(nil)

// NewHCLog returns an hclog.Logger for the library from (e.g. "raft").
func NewHCLog(l *slog.Logger, from string) *HCLog {
	return &HCLog{log: l, name: from, from: from}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *HCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := toSlog(level)
	ctx := context.Background()
	if !h.log.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, 2+len(h.implied)+len(args))
	attrs = append(attrs, "from", h.from)
	if h.name != h.from {
		attrs = append(attrs, "logger", h.name)
	}
	attrs = append(attrs, h.implied...)
	attrs = append(attrs, args...)
	if len(attrs)%2 == 1 { // hclog's convention for a dangling value
		attrs = append(attrs[:len(attrs)-1], "EXTRA_VALUE_AT_END", attrs[len(attrs)-1])
	}
	for i := 1; i < len(attrs); i += 2 {
		attrs[i] = value(attrs[i])
	}
	h.log.Log(ctx, lv, msg, attrs...)
}

// value renders a field as hclog would: hclog.Fmt formatted, errors and
// Stringers as text, plain values kept (typed in JSON), anything else %v.
func value(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64,
		time.Duration, time.Time, []string:
		return v
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		if f, ok := x[0].(string); ok {
			return fmt.Sprintf(f, x[1:]...)
		}
		return fmt.Sprint(x...)
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprintf("%v", v)
}

func (h *HCLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *HCLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *HCLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *HCLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *HCLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *HCLog) enabled(l slog.Level) bool { return h.log.Enabled(context.Background(), l) }
func (h *HCLog) IsTrace() bool             { return h.enabled(LevelTrace) }
func (h *HCLog) IsDebug() bool             { return h.enabled(slog.LevelDebug) }
func (h *HCLog) IsInfo() bool              { return h.enabled(slog.LevelInfo) }
func (h *HCLog) IsWarn() bool              { return h.enabled(slog.LevelWarn) }
func (h *HCLog) IsError() bool             { return h.enabled(slog.LevelError) }

func (h *HCLog) ImpliedArgs() []any { return h.implied }

func (h *HCLog) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	return &c
}

func (h *HCLog) Name() string { return h.name }

func (h *HCLog) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *HCLog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is ignored: the level is gear.log.level, the slog handler's.
func (h *HCLog) SetLevel(hclog.Level) {}

func (h *HCLog) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

// StandardLogger is a log.Logger whose lines go through Writer's "[LEVEL]"
// parsing (libraries that take a *log.Logger write those tags).
func (h *HCLog) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}

func (h *HCLog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &Writer{Log: h.log, From: strings.SplitN(h.name, ".", 2)[0]}
}
