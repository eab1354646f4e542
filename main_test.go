package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/cli"
)

var update = flag.Bool("update", false, "rewrite README.md's CLI block from the registry")

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Environ: func() []string { return nil }}
	code = cli.ExitCode(env, cli.Run(context.Background(), env, cli.Registry(daemonCommands()...), args))
	return code, out.String(), errb.String()
}

// README's CLI block is `gear help`, so it lists every registered command
// with the usage the binary prints. Run `go test . -run README -update`
// after changing a command.
func TestREADMECLIBlockIsTheRegistry(t *testing.T) {
	code, help, _ := run(t, "help")
	if code != 0 {
		t.Fatalf("gear help: exit %d", code)
	}
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	const heading = "## CLI\n\n```\n"
	start := strings.Index(readme, heading)
	if start < 0 {
		t.Fatal("README.md has no \"## CLI\" section starting with a code block")
	}
	start += len(heading)
	end := strings.Index(readme[start:], "```\n")
	if end < 0 {
		t.Fatal("README.md's CLI code block is not closed")
	}
	if got := readme[start : start+end]; got != help {
		if *update {
			if err := os.WriteFile("README.md", []byte(readme[:start]+help+readme[start+end:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README.md's CLI block differs from `gear help`; run `go test . -run README -update`\n--- README:\n%s\n--- gear help:\n%s", got, help)
	}
	for _, c := range cli.Registry(daemonCommands()...) {
		if !strings.Contains(help, "  "+cli.UsageLine(&c)+"\n") {
			t.Errorf("gear help does not list %q", c.Name)
		}
	}
}

// The daemons are in the registry: help, -h and usage errors work for
// them as for every other command, and the contract's flags exist.
func TestDaemonCommands(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"master", "-h"}, 0, "usage: gear master [-conf FILE] [-datadir DIR] [-ip HOST] [-join HOST:PORT] [-port PORT]"},
		{[]string{"help", "worker"}, 0, "usage: gear worker [-conf FILE] [-datadir DIR] [-ip HOST] [-master HOST:PORT,...] [-port PORT]"},
		{[]string{"local", "-help"}, 0, "usage: gear local [-conf FILE] [-datadir DIR] [-port PORT] [-workernum N]"},
		{[]string{"master", "-bogus"}, 2, "-bogus"},
		{[]string{"master", "extra"}, 2, "master: want no arguments"},
		{[]string{"local", "-workernum", "-1"}, 2, "-workernum must be >= 0"},
		{[]string{"worker", "-port", "x"}, 2, "-port"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			where := errOut
			if tc.code == 0 {
				where = out
			}
			if code != tc.code || !strings.Contains(where, tc.want) {
				t.Fatalf("exit %d, want %d and %q\nstdout: %s\nstderr: %s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}

// Every command of the binary, daemons included, answers -h with its
// usage line and exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range cli.Registry(daemonCommands()...) {
		code, out, errOut := run(t, append(strings.Fields(c.Name), "-h")...)
		if code != 0 || !strings.HasPrefix(out, "usage: gear "+cli.UsageLine(&c)+"\n") {
			t.Errorf("gear %s -h: exit %d\nstdout: %s\nstderr: %s", c.Name, code, out, errOut)
		}
	}
}
