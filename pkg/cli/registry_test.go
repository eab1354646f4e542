package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gearRun runs the command line as Main does and returns the exit code
// and what it printed.
func gearRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Environ: func() []string { return nil }}
	code = ExitCode(env, Run(context.Background(), env, Commands(), args))
	return code, out.String(), errb.String()
}

// fakeMaster is an API server that records every request.
type fakeMaster struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []string // "METHOD path auth"
}

func newFakeMaster(t *testing.T) *fakeMaster {
	f := &fakeMaster{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("[]"))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMaster) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeMaster) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func TestRegistryIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Commands() {
		if seen[c.Name] {
			t.Errorf("%q is registered twice", c.Name)
		}
		seen[c.Name] = true
		if c.Synopsis == "" || c.Group == "" {
			t.Errorf("%q: needs a Synopsis and a Group", c.Name)
		}
		if (c.Run == nil) == (c.Flags == nil) {
			t.Errorf("%q: set exactly one of Run and Flags", c.Name)
		}
		if c.NArgs > 0 && len(strings.Fields(c.Args)) != c.NArgs {
			t.Errorf("%q: Args %q does not name its %d arguments", c.Name, c.Args, c.NArgs)
		}
	}
}

// Every command has real help, the same from `gear help CMD`, `gear CMD
// -h` and `gear CMD -help`, and it shows the command's usage line.
func TestHelpForEveryCommand(t *testing.T) {
	_, top, _ := gearRun(t, "help")
	for _, c := range Commands() {
		t.Run(c.Name, func(t *testing.T) {
			usage := "usage: gear " + UsageLine(&c)
			if !strings.Contains(top, "  "+UsageLine(&c)+"\n      "+c.Synopsis+"\n") {
				t.Errorf("`gear help` does not list %q with its synopsis:\n%s", UsageLine(&c), top)
			}
			words := strings.Fields(c.Name)
			code, help, errOut := gearRun(t, append([]string{"help"}, words...)...)
			if code != 0 || !strings.HasPrefix(help, usage+"\n") {
				t.Fatalf("gear help %s: exit %d, want 0 and %q first\nstdout: %s\nstderr: %s", c.Name, code, usage, help, errOut)
			}
			for _, h := range []string{"-h", "-help", "--help"} {
				code, out, errOut := gearRun(t, append(words, h)...)
				if code != 0 || out != help {
					t.Errorf("gear %s %s: exit %d, want 0 and the same text as gear help %s\nstdout: %s\nstderr: %s", c.Name, h, code, c.Name, out, errOut)
				}
			}
			for _, f := range ownFlags(&c) {
				if !strings.Contains(help, "  -"+f.Name) {
					t.Errorf("help does not explain -%s:\n%s", f.Name, help)
				}
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("gear.cluster.masters = [\"node1\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFakeMaster(t)
	m := f.addr()
	cases := []struct {
		args []string
		code int
		want string // on stderr (or stdout for exit 0)
	}{
		{nil, 2, "no command given"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"-bogus"}, 2, "-bogus"},
		{[]string{"app"}, 2, "app: want a subcommand"},
		{[]string{"app", "bogus"}, 2, `unknown subcommand "bogus"`},
		{[]string{"app", "-h"}, 0, "app submit BUNDLE"},
		{[]string{"help", "app"}, 0, "app kill ID"},
		{[]string{"app", "kill", "-master", m}, 2, "app kill: want ID"},
		{[]string{"app", "kill", "1", "2", "-master", m}, 2, "usage: gear app kill ID"},
		{[]string{"app", "list", "-bogus", "-master", m}, 2, "flag provided but not defined: -bogus"},
		{[]string{"app", "list", "-master", m, "--", "x"}, 2, "no arguments after --"},
		{[]string{"app", "scale", "1", "many", "-master", m}, 2, "N must be a count"},
		{[]string{"logs", "-lines", "x", "1", "-master", m}, 2, "-lines"},
		{[]string{"-master", "127.0.0.1", "app", "list"}, 2, "port"},
		{[]string{"help", "nope"}, 2, `unknown command "nope"`},
		{[]string{"config", "check", "-master", m}, 2, "-master does not apply"},
		{[]string{"version", "-conf", bad}, 2, "-conf does not apply"},
		{[]string{"version", "extra"}, 2, "version: want no arguments"},
		{[]string{"config", "check", "-conf", bad}, 1, "bad.conf:1:"},
		{[]string{"help"}, 0, "usage: gear"},
		{[]string{"-h"}, 0, "usage: gear"},
		{[]string{"version"}, 0, "go1."},
		{[]string{"app", "list", "-master", m}, 0, "ID"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := gearRun(t, tc.args...)
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

// `gear app kill -h` prints help; it does not kill an app named "-h".
// The same holds for every command that takes arguments, wherever -h is.
func TestHelpFlagNeverCallsTheAPI(t *testing.T) {
	f := newFakeMaster(t)
	for _, c := range Commands() {
		words := strings.Fields(c.Name)
		args := strings.Fields(c.Args)
		for _, argv := range [][]string{
			append(append([]string{}, words...), "-h"),
			append(append(append([]string{}, words...), args...), "-h"),
			append(append(append([]string{}, words...), "-h"), args...),
		} {
			argv = append(argv, "-master", f.addr())
			if c.Global&MasterFlag == 0 {
				argv = argv[:len(argv)-2]
			}
			code, out, errOut := gearRun(t, argv...)
			if code != 0 || !strings.HasPrefix(out, "usage: gear "+c.Name) {
				t.Errorf("gear %s: exit %d, want 0 and help\nstdout: %s\nstderr: %s", strings.Join(argv, " "), code, out, errOut)
			}
		}
	}
	if r := f.requests(); len(r) != 0 {
		t.Fatalf("-h called the API: %v", r)
	}
}

// -master, -token and -conf work after the command as well as before it.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	f := newFakeMaster(t)
	for _, argv := range [][]string{
		{"-master", f.addr(), "-token", "before", "app", "list", "-json"},
		{"app", "list", "-master", f.addr(), "-token", "after", "-json"},
		{"app", "list", "-json", "-token", "mixed", "-master", f.addr()},
		{"app", "kill", "7", "-master", f.addr(), "-token", "kill"},
		{"-master", "127.0.0.1:1", "workers", "-master", f.addr(), "-token", "wins"},
	} {
		code, out, errOut := gearRun(t, argv...)
		if code != 0 {
			t.Fatalf("gear %v: exit %d\nstdout: %s\nstderr: %s", argv, code, out, errOut)
		}
	}
	want := []string{
		"GET /api/v1/apps Bearer before",
		"GET /api/v1/apps Bearer after",
		"GET /api/v1/apps Bearer mixed",
		"POST /api/v1/apps/7/kill Bearer kill",
		"GET /api/v1/workers Bearer wins",
	}
	if got := f.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	conf := filepath.Join(t.TempDir(), "gear.conf")
	if err := os.WriteFile(conf, []byte("gear.hostname = \"after-the-command\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := gearRun(t, "config", "show", "-json", "-conf", conf)
	if code != 0 || !strings.Contains(out, `"after-the-command"`) {
		t.Fatalf("config show -json -conf FILE: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := gearRun(t, "version", "-json")
	if code != 0 || !strings.Contains(out, `"version": "`) || !strings.Contains(out, `"go": "go1.`) {
		t.Fatalf("version -json: exit %d: %s", code, out)
	}
}
