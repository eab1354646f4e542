package master

import (
	"context"
	"strings"
	"time"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/periodic"
)

// gcLoop deletes bundles no live application references, after the
// grace period.
func (m *Master) gcLoop(ctx context.Context) {
	grace := m.opts.GCGrace
	periodic.Every(ctx, max(grace/4, time.Minute), func(time.Time) {
		if !m.isLeader() {
			return
		}
		if r, err := m.gc(ctx, grace); err != nil {
			m.log.Warn("jar store gc", "err", err)
		} else if len(r.Deleted) > 0 {
			m.log.Info("jar store gc deleted unreferenced bundles", "deleted", strings.Join(r.Deleted, ","))
		}
	})
}

func (m *Master) gc(ctx context.Context, grace time.Duration) (jarstore.GCReport, error) {
	referenced := map[string]bool{}
	m.fsm.read(func(s *State) {
		for _, a := range s.Apps {
			if a.State != cluster.AppKilled {
				referenced[a.Bundle.Digest] = true
			}
		}
	})
	return m.blobs.GC(ctx, referenced, grace, time.Now())
}
