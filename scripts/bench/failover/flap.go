package main

// The flapping-worker scenario (gear only): a worker whose link flaps
// (down 0.5 s, up 0.5 s, for 10 s) must not be declared lost, and none of
// its executors may restart. The flap blocks the worker's bridge port
// rather than taking its link down: a carrier loss flushes the worker's
// ARP entries, and the kernel's 1 s re-resolution probes then keep landing
// in the down halves of a 1 s flap, so no packet at all passes (see
// test/hostloss_test.go, netLab.block).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// flapResult is one flapping-worker round.
type flapResult struct {
	Downed    bool // the leader reported the worker not alive at some point
	Restarted int  // executors whose pid changed or that died
	Elections uint64
}

// gearCLI runs the gear CLI from the probe node against the gear group.
func gearCLI(ctx context.Context, lab *netLab, node int, b *gearBackend, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	full := append([]string{"netns", "exec", lab.nodes[node], b.bin, "-conf", b.conf, "-master", strings.Join(b.addrs, ",")}, args...)
	out, err := exec.CommandContext(ctx, "ip", full...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out, fmt.Errorf("gear %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return out, fmt.Errorf("gear %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// flapRounds starts a worker on lab node workerNode, runs an app with one
// executor on it, and flaps the worker's link rounds times.
func flapRounds(ctx context.Context, g *netGroup, b *gearBackend, workerNode, cliNode, rounds int) ([]flapResult, error) {
	bundle, err := filepath.Abs("conf/examples/hello.tar.gz")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bundle); err != nil {
		return nil, fmt.Errorf("the flapping-worker rounds need %s (run scripts/build-examples.sh from the repository root): %w", bundle, err)
	}
	logf, err := os.Create(filepath.Join(g.dir, "worker.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	w := exec.Command(b.bin, "worker", "-ip", g.lab.ips[workerNode], "-datadir", filepath.Join(g.dir, "worker"))
	w.Env = append(os.Environ(), "GEAR_CONF="+b.conf)
	w = g.lab.wrap(workerNode, w)
	w.Stdout, w.Stderr = logf, logf
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start the worker: %w", err)
	}
	// At the end the worker goes first (else it would restart what is
	// killed), then every executor it started: they run in process groups
	// of their own and outlive it. They are found by the gear.conf of this
	// run in their environment.
	defer func() {
		_ = w.Process.Kill()
		_ = w.Wait()
		killByEnv("GEAR_CONF=" + b.conf)
	}()
	workers := func() ([]cluster.Worker, error) {
		out, err := gearCLI(ctx, g.lab, cliNode, b, "workers", "-json")
		if err != nil {
			return nil, err
		}
		var ws []cluster.Worker
		return ws, json.Unmarshal(out, &ws)
	}
	app := func(id string) (map[string]int, error) {
		out, err := gearCLI(ctx, g.lab, cliNode, b, "app", "list", "-json")
		if err != nil {
			return nil, err
		}
		var apps []cluster.App
		if err := json.Unmarshal(out, &apps); err != nil {
			return nil, err
		}
		for _, a := range apps {
			if a.ID == id {
				pids := map[string]int{}
				for _, e := range a.Executors {
					if e.State == cluster.Running && e.PID > 0 {
						pids[e.ID] = e.PID
					}
				}
				return pids, nil
			}
		}
		return nil, fmt.Errorf("no app %s", id)
	}
	poll := func(what string, limit time.Duration, cond func() bool) error {
		end := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(end) {
				return fmt.Errorf("timed out after %v waiting for %s", limit, what)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		return nil
	}
	if err := poll("the worker to register", 60*time.Second, func() bool {
		ws, err := workers()
		return err == nil && len(ws) == 1 && ws[0].Alive
	}); err != nil {
		return nil, err
	}
	out, err := gearCLI(ctx, g.lab, cliNode, b, "app", "submit", bundle, "-executors", "1", "-quiet")
	if err != nil {
		return nil, err
	}
	id := strings.TrimSpace(string(out))
	defer func() { _, _ = gearCLI(context.Background(), g.lab, cliNode, b, "app", "kill", id) }()
	var res []flapResult
	for r := range rounds {
		var before map[string]int
		if err := poll("the app to run", 60*time.Second, func() bool {
			before, err = app(id)
			return err == nil && len(before) == 1
		}); err != nil {
			return res, err
		}
		_, st, err := g.waitHealthy(ctx, healthyLimit)
		if err != nil {
			return res, err
		}
		var fr flapResult
		// The leader's view of the worker, watched beside the flap.
		var downed atomic.Bool
		wctx, stopWatch := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			for wctx.Err() == nil {
				if ws, err := workers(); err == nil && (len(ws) != 1 || !ws[0].Alive) {
					downed.Store(true)
				}
				select {
				case <-wctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
		port := fmt.Sprintf("v%d", workerNode)
		var ferr error
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && ferr == nil; {
			ferr = run1("bridge", "-n", g.lab.bridge, "link", "set", "dev", port, "state", "0")
			time.Sleep(500 * time.Millisecond)
			ferr = errors.Join(ferr, run1("bridge", "-n", g.lab.bridge, "link", "set", "dev", port, "state", "3"))
			time.Sleep(500 * time.Millisecond)
		}
		stopWatch()
		wg.Wait()
		if ferr != nil {
			return res, ferr
		}
		fr.Downed = downed.Load()
		if ws, err := workers(); err != nil || len(ws) != 1 || !ws[0].Alive {
			fr.Downed = true
		}
		after, err := app(id)
		if err != nil {
			return res, err
		}
		for e, pid := range before {
			if after[e] != pid {
				fr.Restarted++
			}
		}
		sts, errs := g.statuses(ctx, statusTimeout)
		for i := range size {
			if errs[i] == nil && sts[i].Term > st.Term {
				fr.Elections = max(fr.Elections, sts[i].Term-st.Term)
			}
		}
		res = append(res, fr)
		_ = r
	}
	return res, nil
}

// killByEnv SIGKILLs the process group of every process whose environment
// holds kv.
func killByEnv(kv string) {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, e := range strings.Split(string(env), "\x00") {
			if e == kv {
				if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
					_ = syscall.Kill(-pgid, syscall.SIGKILL)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}
