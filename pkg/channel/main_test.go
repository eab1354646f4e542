package channel

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// quietRedisLog drops go-redis's own connection-pool log lines (it has one
// process-wide logger) unless the tests run with -v: the outage tests make
// it print one line per failed dial.
type quietRedisLog struct{ verbose bool }

func (q quietRedisLog) Printf(_ context.Context, format string, v ...any) {
	if q.verbose {
		fmt.Fprintf(os.Stderr, "go-redis: "+format+"\n", v...)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	redis.SetLogger(quietRedisLog{verbose: testing.Verbose()})
	os.Exit(m.Run())
}
