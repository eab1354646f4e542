package config

import (
	"context"
	"log/slog"
)

// Log writes the report: each warning at Warn level, each info line and the
// files read at Info level.
func (r *Report) Log(ctx context.Context, l *slog.Logger) {
	if r == nil || l == nil {
		return
	}
	if len(r.Sources) > 0 {
		l.InfoContext(ctx, "configuration loaded", "files", r.Sources)
	}
	for _, w := range r.Warnings {
		l.WarnContext(ctx, w)
	}
	for _, i := range r.Info {
		l.InfoContext(ctx, i)
	}
}
