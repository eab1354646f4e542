// Package cli is the `gear` binary: the daemons (`master`, `worker`,
// `local`) and the operator commands (`app`, `masters`, `workers`, `logs`,
// `config`, `jarstore`). It turns gear.conf, environment and flags into the
// options of master.Master and worker.Worker, and prints what the API
// answers. It holds no cluster logic of its own.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/hocon"
)

// Env is what a command runs with; tests swap the streams.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Environ        func() []string
}

// Main runs the gear command line and returns the exit code.
//
// SIGINT and SIGTERM cancel the context every command runs with: a command
// ends, a daemon shuts down gracefully. The first signal also gives both
// signals back their default action, so a second one ends the process at
// once even if something does not honour the context (exit status 130 or
// 143 in the shell). A command cut short by a signal exits 128+signal; a
// daemon that shut down cleanly exits 0. An operator command still running
// interruptGrace after the signal (blocked in something that does not
// honour the context) exits 128+signal then; a daemon is given the time its
// graceful shutdown takes.
func Main(args []string) int {
	env := Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Environ: os.Environ}
	grace := interruptGrace
	if isDaemon(args) {
		grace = 0
	}
	ctx, stop := signalContext(context.Background(), env.Stderr, grace)
	defer stop()
	err := Run(ctx, env, args)
	if err == nil {
		return 0
	}
	var sig interrupted
	if errors.As(context.Cause(ctx), &sig) {
		fmt.Fprintln(env.Stderr, "gear:", sig)
		return 128 + int(sig.sig)
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(env.Stderr, "gear:", hocon.Escape(err.Error()))
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	// Escaped: an error may repeat bytes of a file or of a server's answer.
	fmt.Fprintln(env.Stderr, "gear:", hocon.Escape(err.Error()))
	return 1
}

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + unix.SignalName(i.sig) }

// interruptGrace is how long an operator command may take to end after
// SIGINT or SIGTERM before Main exits without it.
const interruptGrace = 2 * time.Second

// signalContext returns a context cancelled, with an interrupted cause, by
// the first SIGINT or SIGTERM. After that first signal both signals have
// their default action again: the next one ends the process at once. With
// grace > 0 the process also exits 128+signal when the returned stop
// function has not been called within grace of the signal.
func signalContext(parent context.Context, stderr io.Writer, grace time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			sig := interrupted{s.(syscall.Signal)}
			cancel(sig)
			if grace <= 0 {
				return
			}
			select {
			case <-time.After(grace):
				fmt.Fprintf(stderr, "gear: %s; the command did not stop within %s, exiting\n", sig, grace)
				os.Exit(128 + int(sig.sig))
			case <-done:
			}
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// isDaemon reports whether args (without the program name) run a daemon:
// master, worker or local. It skips the global flags as Run parses them.
func isDaemon(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return false
		case strings.HasPrefix(a, "-"):
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && (name == "master" || name == "token" || name == "conf") {
				i++ // the flag's value
			}
			continue
		}
		return a == "master" || a == "worker" || a == "local"
	}
	return false
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const topUsage = `usage: gear [-master host:port,...] [-token T] [-conf FILE] COMMAND

daemons:
  master -ip HOST -port PORT [-conf FILE] [-datadir DIR]
  worker [-ip HOST] [-port PORT] [-conf FILE] [-datadir DIR]
  local  [-workernum N] [-conf FILE] [-port PORT]    one master and N workers in one process

applications:
  app submit BUNDLE [-name NAME] [-executors N] [-main CLASS] [-quiet] [-- ARGS...]
  app list [-json] | app info ID [-json] | app kill ID
  app restart ID [-env K=V ...] | app scale ID N [-process NAME]
  logs ID [-executor EXEC] [-f] [-lines N]

cluster:
  masters [-json] | workers [-json]
  jarstore ls [-json] | jarstore gc [-grace DURATION]
  config check [-conf FILE] | config show [-conf FILE] [-json]

-master defaults to gear.cluster.masters of the conf file; GEAR_MASTERS, GEAR_TOKEN
and GEAR_CONF work too.
`

// global holds the flags every command shares.
type global struct {
	masters string
	token   string
	conf    string
}

// Run dispatches args (without the program name).
func Run(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("gear", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var g global
	fs.StringVar(&g.masters, "master", "", "masters to talk to, host:port[,host:port...] (default: gear.cluster.masters)")
	fs.StringVar(&g.token, "token", "", "cluster token (default: GEAR_TOKEN or gear.auth.token)")
	fs.StringVar(&g.conf, "conf", "", "gear.conf to read (default: GEAR_CONF or conf/gear.conf of the install)")
	fs.Usage = func() { fmt.Fprint(env.Stderr, topUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(env.Stderr, topUsage)
		return usagef("no command given")
	}
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "master":
		return runMaster(ctx, env, g, rest)
	case "worker":
		return runWorker(ctx, env, g, rest)
	case "local":
		return runLocal(ctx, env, g, rest)
	case "app":
		return runApp(ctx, env, g, rest)
	case "masters":
		return runMasters(ctx, env, g, rest)
	case "workers":
		return runWorkers(ctx, env, g, rest)
	case "logs":
		return runLogs(ctx, env, g, rest)
	case "config":
		return runConfig(env, g, rest)
	case "jarstore":
		return runJarstore(ctx, env, g, rest)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, topUsage)
		return nil
	}
	fmt.Fprint(env.Stderr, topUsage)
	return usagef("unknown command %q", cmd)
}

// home is the install directory: GEAR_HOME (set by bin/*), else the
// parent of the directory holding the binary.
func home(env Env) string {
	if h := env.Getenv("GEAR_HOME"); h != "" {
		return h
	}
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	return filepath.Dir(filepath.Dir(exe))
}

// confPath picks the conf file: -conf, GEAR_CONF, else <home>/conf/gear.conf.
func confPath(env Env, flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if c := env.Getenv("GEAR_CONF"); c != "" {
		return c
	}
	return filepath.Join(home(env), "conf", "gear.conf")
}

// loadConfig reads gear.conf with env and the given overrides layered on
// top, and reports warnings on stderr.
func loadConfig(env Env, file string, overrides map[string]any) (*config.Config, error) {
	path := confPath(env, file)
	if file == "" && env.Getenv("GEAR_CONF") == "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = "" // no install conf: embedded defaults
		}
	}
	cfg, rep, err := config.Load(config.LoadOptions{File: path, Env: env.Environ(), Overrides: overrides})
	if rep != nil {
		for _, w := range rep.Warnings {
			fmt.Fprintln(env.Stderr, "gear: warning:", hocon.Escape(w))
		}
		for _, i := range rep.Info {
			fmt.Fprintln(env.Stderr, "gear: info:", hocon.Escape(i))
		}
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// newLogger builds the daemons' logger from gear.log.*.
func newLogger(env Env, cfg *config.Config) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.Log.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(env.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(env.Stderr, opts))
}

// parseFlags parses a subcommand's flags, allowing flags after positional
// arguments (`app info 3 -json`). Everything after "--" is returned after
// the positional arguments, as the second result.
func parseFlags(fs *flag.FlagSet, args []string) (pos, extra []string, err error) {
	for i, a := range args {
		if a == "--" {
			args, extra = args[:i], append([]string{}, args[i+1:]...)
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, extra, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
