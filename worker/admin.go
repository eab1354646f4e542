package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

const adminHelp = `gear worker admin REPL (cluster-master verbs)
  help                 this text
  size                 number of executors on this worker
  executors | workers  one line per executor: id state pid cpus
  pids                 map of executor id to pid
  ages                 map of executor id to age in seconds
  states               map of executor id to state
  connections          number of open REPL connections
  resize APP N         set application APP's instance count to N (through the leader)
  restart [ID]         graceful rolling restart of this worker's executors (or one)
  stop                 graceful: stop every executor, then the worker (quit)
  kill                 forceful: SIGKILL every executor, then the worker (quitHard)
  .exit | exit         close this connection
`

// serveAdmin runs the admin REPL on a unix socket only the worker's user
// can open (mode 0600).
func (w *Worker) serveAdmin(ctx context.Context, path string) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	var conns atomic.Int32
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				_ = os.Remove(path)
				return nil
			}
			return err
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			defer c.Close()
			w.adminSession(ctx, c, &conns)
		}()
	}
}

func (w *Worker) adminSession(ctx context.Context, c io.ReadWriter, conns *atomic.Int32) {
	sc := bufio.NewScanner(c)
	fmt.Fprint(c, "gear> ")
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			fmt.Fprint(c, "gear> ")
			continue
		}
		out, quit := w.adminCommand(ctx, fields, conns)
		fmt.Fprint(c, out)
		if quit {
			return
		}
		fmt.Fprint(c, "gear> ")
	}
}

// adminCommand runs one REPL line and returns its output.
func (w *Worker) adminCommand(ctx context.Context, f []string, conns *atomic.Int32) (string, bool) {
	execs := w.sortedExecs()
	mapOf := func(v func(r cluster.ExecutorReport) any) string {
		m := map[string]any{}
		for _, e := range execs {
			m[e.id] = v(e.report())
		}
		b, _ := json.MarshalIndent(m, "", "  ")
		return string(b) + "\n"
	}
	switch f[0] {
	case "help":
		return adminHelp, false
	case ".exit", "exit", "quit":
		return "bye\n", true
	case "size":
		return strconv.Itoa(len(execs)) + "\n", false
	case "connections":
		return strconv.Itoa(int(conns.Load())) + "\n", false
	case "executors", "workers":
		var b strings.Builder
		for _, e := range execs {
			r := e.report()
			fmt.Fprintf(&b, "%s %s pid=%d cpus=%s restarts=%d\n", r.ID, r.State, r.PID, cluster.FormatInts(r.CPUs), r.Restarts)
		}
		return b.String(), false
	case "pids":
		return mapOf(func(r cluster.ExecutorReport) any { return r.PID }), false
	case "states":
		return mapOf(func(r cluster.ExecutorReport) any { return r.State }), false
	case "ages":
		return mapOf(func(r cluster.ExecutorReport) any {
			if r.StartedAt.IsZero() {
				return 0
			}
			return int(time.Since(r.StartedAt).Seconds())
		}), false
	case "resize":
		if len(f) != 3 {
			return "usage: resize APP N\n", false
		}
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 0 {
			return fmt.Sprintf("resize: %q is not a count >= 0\n", f[2]), false
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := w.client.Scale(cctx, f[1], cluster.ScaleRequest{Instances: n}); err != nil {
			return "resize: " + err.Error() + "\n", false
		}
		return fmt.Sprintf("app %s resized to %d\n", f[1], n), false
	case "restart":
		id := ""
		if len(f) > 1 {
			id = f[1]
		}
		if err := w.RollingRestart(ctx, id); err != nil {
			return "restart: " + err.Error() + "\n", false
		}
		return "restarted\n", false
	case "stop", "kill":
		mode := "graceful"
		if f[0] == "kill" {
			mode = "hard"
		}
		w.mu.Lock()
		w.stopMode = mode
		w.mu.Unlock()
		w.life.Stop()
		return "stopping the worker (" + mode + ")\n", true
	}
	return fmt.Sprintf("unknown command %q; type help\n", f[0]), false
}

// RollingRestart restarts this worker's executors (or the one named id)
// gracefully, one at a time: each next one only once the previous is
// RUNNING again. SIGHUP does this for all of them.
func (w *Worker) RollingRestart(ctx context.Context, id string) error {
	found := false
	for _, e := range w.sortedExecs() {
		if id != "" && e.id != id {
			continue
		}
		found = true
		e.mu.Lock()
		sup := e.sup
		e.mu.Unlock()
		if sup == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, w.stopTimeout()+30*time.Second)
		err := sup.Restart(rctx, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", e.id, err)
		}
		w.log.Info("restarted executor", "executor", e.id)
	}
	if id != "" && !found {
		return fmt.Errorf("no executor %q on this worker", id)
	}
	return nil
}
