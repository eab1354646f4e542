// Package cli is gear's command line: the registry that describes every
// command once (registry.go) and the operator commands (`app`, `masters`,
// `workers`, `logs`, `config`, `jarstore`, `version`, `help`). It prints
// what the API answers and holds no cluster logic of its own. The daemons
// (`master`, `worker`, `local`) are wired in package main, which registers
// them into the same registry; nothing here imports master or worker.
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
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/hocon"
)

// Env is what a command runs with; tests swap the streams.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Environ        func() []string
}

// Main runs the gear command line with the operator commands and extra
// (the daemons, from package main) and returns the exit code: 0 ok, 1 the
// command failed, 2 the command line is wrong, 128+signal when SIGINT or
// SIGTERM cut the command short.
//
// SIGINT and SIGTERM cancel the context every command runs with: a command
// ends, a daemon shuts down gracefully. The first signal also gives both
// signals back their default action, so a second one ends the process at
// once even if something does not honour the context. An operator command
// still running interruptGrace after the signal (blocked in something that
// does not honour the context) exits 128+signal then; a daemon is given
// the time its graceful shutdown takes, and exits 0 after it.
func Main(args []string, extra ...Command) int {
	env := Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Environ: os.Environ}
	cmds := Registry(extra...)
	grace := interruptGrace
	if isDaemon(cmds, args) {
		grace = 0
	}
	ctx, stop := signalContext(context.Background(), env.Stderr, grace)
	defer stop()
	err := Run(ctx, env, cmds, args)
	var sig interrupted
	if err != nil && errors.As(context.Cause(ctx), &sig) {
		fmt.Fprintln(env.Stderr, "gear:", sig)
		return 128 + int(sig.sig)
	}
	return ExitCode(env, err)
}

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + unix.SignalName(i.sig) }

// interruptGrace is how long an operator command may take to end after
// SIGINT or SIGTERM before Main exits without it.
const interruptGrace = 2 * time.Second

// duplicateWindow is how long after a first SIGINT or SIGTERM further ones
// count as the same request to stop. One stop often arrives twice at
// once: a terminal's Ctrl-C reaches the whole foreground process group,
// and the script that started gear (make run, an init script) sends its
// own SIGTERM on top. Taking that second one for an operator who insists
// ended `gear local` at once, leaving its executors running without it.
const duplicateWindow = time.Second

// signalContext returns a context cancelled, with an interrupted cause, by
// the first SIGINT or SIGTERM. Signals within duplicateWindow of it are
// the same request; after that, both signals have their default action
// again: the next one ends the process at once. With grace > 0 the
// process also exits 128+signal when the returned stop function has not
// been called within grace of the signal.
func signalContext(parent context.Context, stderr io.Writer, grace time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var s os.Signal
		select {
		case s = <-sigs:
		case <-done:
			return
		}
		sig := interrupted{s.(syscall.Signal)}
		cancel(sig)
		var exit <-chan time.Time
		if grace > 0 {
			exit = time.After(grace)
		}
		dup := time.NewTimer(duplicateWindow)
		defer dup.Stop()
		for {
			select {
			case <-sigs: // the same request, delivered again
			case <-dup.C:
				signal.Stop(sigs)
			case <-exit:
				fmt.Fprintf(stderr, "gear: %s; the command did not stop within %s, exiting\n", sig, grace)
				os.Exit(128 + int(sig.sig))
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// isDaemon reports whether args (without the program name) run a command
// marked Daemon, skipping the global flags as Run parses them.
func isDaemon(cmds []Command, args []string) bool {
	fs := flag.NewFlagSet("gear", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var g Global
	g.register(fs, ClusterFlags)
	if fs.Parse(args) != nil {
		return false
	}
	cmd, _ := lookup(cmds, fs.Args())
	return cmd != nil && cmd.Daemon
}

// Registry is every command of the binary: extra (the daemons, from
// package main) first, then the operator commands.
func Registry(extra ...Command) []Command {
	return append(append([]Command{}, extra...), Commands()...)
}

// ExitCode reports err on env.Stderr and returns the exit code for it.
func ExitCode(env Env, err error) int {
	if err == nil {
		return 0
	}
	// Escaped: an error may repeat bytes of a file or of a server's answer.
	fmt.Fprintln(env.Stderr, "gear:", hocon.Escape(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		switch {
		case ue.cmd != nil:
			fmt.Fprintf(env.Stderr, "usage: gear %s\nrun 'gear help %s' for more\n", UsageLine(ue.cmd), ue.cmd.Name)
		case ue.group != "":
			fmt.Fprintf(env.Stderr, "run 'gear help %s' for its subcommands\n", ue.group)
		default:
			fmt.Fprintln(env.Stderr, "run 'gear help' for the list of commands")
		}
		return 2
	}
	return 1
}

// Run parses the global flags and runs the command args name (args
// without the program name) from cmds.
func Run(ctx context.Context, env Env, cmds []Command, args []string) error {
	fs := flag.NewFlagSet("gear", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var g Global
	g.register(fs, ClusterFlags)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(env.Stdout, TopHelp(cmds))
		return nil
	} else if err != nil {
		return Usagef("%v", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(env.Stderr, TopHelp(cmds))
		return Usagef("no command given")
	}
	return dispatch(ctx, env, g, cmds, rest)
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
	cfg, _, err := loadConfigReport(env, file, overrides)
	return cfg, err
}

// loadConfigReport is loadConfig that also returns the load's report
// (which file was read, where each key was set).
func loadConfigReport(env Env, file string, overrides map[string]any) (*config.Config, *config.Report, error) {
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
		return nil, rep, err
	}
	return cfg, rep, nil
}

// LoadConfig reads gear.conf (-conf, GEAR_CONF or the install's) with the
// environment and overrides layered on top; warnings go to stderr.
func (c *Call) LoadConfig(overrides map[string]any) (*config.Config, error) {
	return loadConfig(c.Env, c.Global.Conf, overrides)
}

// Logger is the daemons' logger, built from gear.log.*.
func (c *Call) Logger(cfg *config.Config) *slog.Logger { return newLogger(c.Env, cfg) }

// DaemonLogger is the daemons' logger, built from gear.log.*: to stderr
// (gear.log.stderr) and/or to gear.log.file, rotated by lumberjack at
// gear.log.max-size, keeping gear.log.max-backups files no older than
// gear.log.max-age. A relative file is taken under the install directory.
// The returned func closes the file.
func (c *Call) DaemonLogger(cfg *config.Config) (*slog.Logger, func() error, error) {
	return daemonLogger(c.Env, cfg)
}

func daemonLogger(env Env, cfg *config.Config) (*slog.Logger, func() error, error) {
	l := cfg.Log
	if l.File == "" {
		return newLogger(env, cfg), func() error { return nil }, nil
	}
	path := l.File
	if !filepath.IsAbs(path) {
		path = filepath.Join(home(env), path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("gear.log.file: %w (choose a writable path)", err)
	}
	// lumberjack opens the file on the first write: try it now so that a
	// bad path stops the daemon with a clear error, not a silent log.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("gear.log.file: %w (choose a writable path)", err)
	}
	f.Close()
	lj := &lumberjack.Logger{
		Filename:   path,
		MaxSize:    int(max(1, (l.MaxSize+(1<<20)-1)>>20)), // MB, as lumberjack counts
		MaxBackups: l.MaxBackups,
		MaxAge:     int((l.MaxAge + 24*time.Hour - 1) / (24 * time.Hour)), // days
	}
	var out io.Writer = lj
	if l.Stderr {
		out = io.MultiWriter(env.Stderr, lj)
	}
	return loggerTo(out, cfg), lj.Close, nil
}

// Home is the install directory (GEAR_HOME, else the binary's parent).
func (c *Call) Home() string { return home(c.Env) }

// newLogger builds the daemons' logger from gear.log.* (to stderr).
func newLogger(env Env, cfg *config.Config) *slog.Logger { return loggerTo(env.Stderr, cfg) }

func loggerTo(w io.Writer, cfg *config.Config) *slog.Logger {
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
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
