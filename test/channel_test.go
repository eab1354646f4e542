package test

import (
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/test/redistest"
)

// The chat example on a real cluster: two executors share a Redis global
// channel configured in gear.conf (handed to them through the worker's env),
// and each receives the other's pushes.
func TestGlobalChannelAcrossExecutors(t *testing.T) {
	redis := redistest.Start(t)
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: `gear.channel.redis = "` + redis.Addr() + `"`})
	waitFor(t, 20*time.Second, "a leader", func() bool { return c.leader() != "" })
	id := strings.TrimSpace(c.mustGear("app", "submit", example("chat.tar.gz"), "-quiet", "--", "-every", "300ms"))
	waitFor(t, 30*time.Second, "both chat executors RUNNING", func() bool {
		pids := runningPIDs(c.app(id))
		killPIDsAtCleanup(t, pids)
		return len(pids) == 2
	})
	for _, pair := range [][2]string{{"0", "1"}, {"1", "0"}} {
		self, other := id+".chat."+pair[0], id+".chat."+pair[1]
		waitFor(t, 20*time.Second, self+" to receive a push from "+other, func() bool {
			out, _, _ := c.gear("logs", self, "-lines", "200")
			return strings.Contains(out, "chat: delivery") && strings.Contains(out, "from "+other)
		})
	}
	c.mustGear("app", "kill", id)
}
