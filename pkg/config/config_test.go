package config

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gear-run/gear/pkg/hocon"
)

const shippedConf = "../../conf/gear.conf"

func writeConf(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gear.conf")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, opts LoadOptions) (*Config, *Report) {
	t.Helper()
	c, rep, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c, rep
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestShippedConf(t *testing.T) {
	c, rep := mustLoad(t, LoadOptions{File: shippedConf})
	if len(rep.Warnings) != 0 || len(rep.Info) != 0 {
		t.Errorf("shipped conf: warnings %q, info %q; want none", rep.Warnings, rep.Info)
	}
	if want := Default(); !reflect.DeepEqual(*c, want) {
		t.Errorf("shipped conf differs from Default():\n got %+v\nwant %+v", *c, want)
	}
	doc, err := hocon.ParseFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, k := range doc.Keys() {
		set[k] = true
	}
	for _, k := range Keys() {
		if !set[k] {
			t.Errorf("conf/gear.conf does not document %s", k)
		}
	}
}

func TestGearpumpSnippet(t *testing.T) {
	file := writeConf(t, `gearpump.hostname = "node1"
gearpump.cluster { masters = ["node1:3000", "node2:3000", "node3:3000"] }
gearpump.jarstore.rootpath = "file:///mnt/nfs/gear"
gearpump-master.akka.cluster.auto-down-unreachable-after=10s
`)
	c, rep := mustLoad(t, LoadOptions{File: file})
	if c.Hostname != "node1" || !reflect.DeepEqual(c.Masters, []string{"node1:3000", "node2:3000", "node3:3000"}) ||
		c.JarStore.RootPath != "file:///mnt/nfs/gear" || c.FailoverTimeout != 10*time.Second {
		t.Errorf("got hostname %q masters %q rootpath %q timeout %v", c.Hostname, c.Masters, c.JarStore.RootPath, c.FailoverTimeout)
	}
	if len(rep.Warnings) != 0 || len(rep.Info) != 0 {
		t.Errorf("warnings %q info %q, want none", rep.Warnings, rep.Info)
	}
	if c.EffectiveStopAfterDisconnect() != 7500*time.Millisecond {
		t.Errorf("stop after disconnect = %v, want 7.5s", c.EffectiveStopAfterDisconnect())
	}
}

func TestGearpumpFullFile(t *testing.T) {
	c, rep := mustLoad(t, LoadOptions{File: "../hocon/testdata/gearpump-full.conf"})
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings: %q", rep.Warnings)
	}
	if len(rep.Info) != 1 || !strings.Contains(rep.Info[0], "ignored") {
		t.Fatalf("info = %q, want one summary line", rep.Info)
	}
	t.Log(rep.Info[0])
	if c.Hostname != "node1" || len(c.Masters) != 3 || c.JarStore.RootPath != "file:///mnt/nfs/gear" || c.FailoverTimeout != 15*time.Second {
		t.Errorf("got hostname %q masters %q rootpath %q timeout %v", c.Hostname, c.Masters, c.JarStore.RootPath, c.FailoverTimeout)
	}
	if len(rep.Sources) != 1 {
		t.Errorf("sources = %q", rep.Sources)
	}
}

func TestAliasAppendedToShippedFileWins(t *testing.T) {
	shipped, err := os.ReadFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	file := writeConf(t, string(shipped)+"\ngearpump-master.akka.cluster.auto-down-unreachable-after=10s\ngearpump.cluster.masters = [\"a:1\", \"b:2\"]\n")
	c, rep := mustLoad(t, LoadOptions{File: file})
	if c.FailoverTimeout != 10*time.Second || !reflect.DeepEqual(c.Masters, []string{"a:1", "b:2"}) {
		t.Errorf("timeout %v masters %q: the later alias must win", c.FailoverTimeout, c.Masters)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings %q", rep.Warnings)
	}
	// And the other way round: a gear.* key after the alias wins.
	file = writeConf(t, "gearpump.hostname = a\ngear.hostname = b\n")
	if c, _ := mustLoad(t, LoadOptions{File: file}); c.Hostname != "b" {
		t.Errorf("hostname %q, want b", c.Hostname)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeConf(t, "gear.failover.timeout = 8s\ngear.hostname = filehost\ngear.log.level = warn\ngear.cluster.masters = [\"f:1\"]\n")
	tests := []struct {
		name      string
		env       []string
		overrides map[string]any
		check     func(t *testing.T, c *Config)
	}{
		{"file over defaults", nil, nil, func(t *testing.T, c *Config) {
			if c.FailoverTimeout != 8*time.Second || c.Hostname != "filehost" || c.Executor.MaxRestarts != 10 {
				t.Errorf("%v %q %d", c.FailoverTimeout, c.Hostname, c.Executor.MaxRestarts)
			}
		}},
		{"env over file", []string{"GEAR_FAILOVER_TIMEOUT=300 s", "GEAR_WORKER_STOP_AFTER_DISCONNECT=off", "GEAR_MASTERS=a:1, b:2", "GEAR_TOKEN=s3cret", "HOME=/x"}, nil, func(t *testing.T, c *Config) {
			if c.FailoverTimeout != 300*time.Second || c.Worker.StopAfterDisconnect != Never || c.Token != "s3cret" ||
				!reflect.DeepEqual(c.Masters, []string{"a:1", "b:2"}) || c.EffectiveStopAfterDisconnect() != Never {
				t.Errorf("%v %v %q %q", c.FailoverTimeout, c.Worker.StopAfterDisconnect, c.Token, c.Masters)
			}
		}},
		{"full env name beats short", []string{"GEAR_MASTERS=a:1", "GEAR_CLUSTER_MASTERS=[\"c:3\"]"}, nil, func(t *testing.T, c *Config) {
			if !reflect.DeepEqual(c.Masters, []string{"c:3"}) {
				t.Errorf("%q", c.Masters)
			}
		}},
		{"override over env", []string{"GEAR_HOSTNAME=envhost", "GEAR_LOG_LEVEL=debug"}, map[string]any{"gear.hostname": "flaghost", "gear.datadir": "/d", "gearpump.worker.cpus": "0-2,5"}, func(t *testing.T, c *Config) {
			if c.Hostname != "flaghost" || c.DataDir != "/d" || c.Log.Level != "debug" || !reflect.DeepEqual(c.Worker.CPUs, []int{0, 1, 2, 5}) {
				t.Errorf("%q %q %q %v", c.Hostname, c.DataDir, c.Log.Level, c.Worker.CPUs)
			}
		}},
		{"typed overrides", nil, map[string]any{"gear.failover.timeout": 3 * time.Second, "gear.cluster.masters": []string{"x:9"}, "gear.executor.max-restarts": 4}, func(t *testing.T, c *Config) {
			if c.FailoverTimeout != 3*time.Second || c.Masters[0] != "x:9" || c.Executor.MaxRestarts != 4 {
				t.Errorf("%v %q %d", c.FailoverTimeout, c.Masters, c.Executor.MaxRestarts)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoad(t, LoadOptions{File: file, Env: tt.env, Overrides: tt.overrides})
			tt.check(t, c)
		})
	}
}

func TestConfFromEnvAndSubstitution(t *testing.T) {
	file := writeConf(t, "gear.hostname = ${MYHOST}\ngear.datadir = ${?NOPE}\n")
	c, rep := mustLoad(t, LoadOptions{Env: []string{"GEAR_CONF=" + file, "MYHOST=node7"}})
	if c.Hostname != "node7" || c.DataDir != "" || len(rep.Sources) != 1 || rep.Sources[0] != file {
		t.Errorf("hostname %q datadir %q sources %q", c.Hostname, c.DataDir, rep.Sources)
	}
	if c, _ := mustLoad(t, LoadOptions{}); !reflect.DeepEqual(*c, Default()) {
		t.Error("no file, no env: want the defaults")
	}
	if _, _, err := Load(LoadOptions{File: filepath.Join(t.TempDir(), "missing.conf")}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestWarnings(t *testing.T) {
	file := writeConf(t, "gear.cluster.master = [\"a:1\"]\ngear.masters = x\ngear.zzz.qqq = 1\ngaer.hostname = x\nakka.loglevel = INFO\ngearpump.worker.slots = 3\n")
	_, rep := mustLoad(t, LoadOptions{File: file, Env: []string{"GEAR_FAILOVER_TIMOUT=3s", "GEAR_APP_ID=7"}})
	want := []string{
		file + `:1:23: gear.cluster.master: unknown key, ignored, did you mean gear.cluster.masters?`,
		file + `:2:16: gear.masters: unknown key, ignored, did you mean gear.cluster.masters?`,
		file + `:3:16: gear.zzz.qqq: unknown key, ignored`,
		file + `:4:17: gaer.hostname: unknown key, ignored, did you mean gear.hostname?`,
		`env GEAR_FAILOVER_TIMOUT: not a gear setting, ignored, did you mean GEAR_FAILOVER_TIMEOUT?`,
	}
	if !reflect.DeepEqual(rep.Warnings, want) {
		t.Errorf("warnings:\n got  %q\n want %q", rep.Warnings, want)
	}
	if len(rep.Info) != 1 || !strings.Contains(rep.Info[0], "ignored 2 Gearpump-only settings") {
		t.Errorf("info %q", rep.Info)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		env       []string
		overrides map[string]any
		want      []string // "F" is replaced by the file name
	}{
		{"master without port", "gear.hostname = node1\n\ngear.cluster.masters = [\"node1\", \"node2:3000\"]\n", nil, nil,
			[]string{`F:3:25: gear.cluster.masters: "node1" has no port (want host:port, e.g. "node1:3000")`}},
		{"alias error names the key as written", "gearpump.cluster {\n  masters = [\"node1:3000\", \"node2:x\"]\n}", nil, nil,
			[]string{`F:2:28: gearpump.cluster.masters: "node2:x" has an invalid port "x" (want a number from 1 to 65535)`}},
		{"duplicate master", "gear.cluster.masters = [a:1, a:1]", nil, nil,
			[]string{`F:1:30: gear.cluster.masters: "a:1" is listed twice (elements 0 and 1)`}},
		{"bad duration", "gear {\n  failover.timeout = 10 sec0nds\n}", nil, nil,
			[]string{`F:2:22: gear.failover.timeout: "10 sec0nds" is not a duration (want e.g. 10s, 500ms, "300 s", "10 seconds", 2m, 1h; a bare number is milliseconds)`}},
		{"timeout too short", "gear.failover.timeout = 500", nil, nil,
			[]string{`F:1:25: gear.failover.timeout: 500ms is too short (want at least 1s; the default 6s rides out a 1 s pause of the leader)`}},
		{"stop-after-disconnect above timeout", "gear.worker.stop-after-disconnect = 8s", nil, nil,
			[]string{`F:1:37: gear.worker.stop-after-disconnect: 8s is not below gear.failover.timeout (6s): the masters would reschedule executors while this worker still runs them (use a shorter value, 0 for 0.75 x the timeout, or off to accept duplicates)`}},
		{"gossip key", "gear.gossip.key = \"aGVsbG8=\"", nil, nil,
			[]string{`F:1:19: gear.gossip.key: decodes to 5 bytes, want 16, 24 or 32 (AES-128/192/256; generate one with: head -c 32 /dev/urandom | base64)`}},
		{"rootpath scheme", "gear.jarstore.rootpath = \"s3://bucket/x\"", nil, nil,
			[]string{`F:1:26: gear.jarstore.rootpath: scheme "s3" is not supported (want hdfs://host:port/path/, hdfs://nameservice/path/ (HDFS HA), file:///nfs/dir, a directory on each master (jarstore/ or /dir), or unset for the master's local data dir)`}},
		{"rootpath file host", "gear.jarstore.rootpath = \"file://mnt/nfs\"", nil, nil,
			[]string{`F:1:26: gear.jarstore.rootpath: "file://mnt/nfs" names host "mnt": file:// takes a path mounted on every master, e.g. file:///mnt/nfs/gear (three slashes)`}},
		{"size", "gear.jarstore.max-bundle-size = 4 jiggabytes", nil, nil,
			[]string{`F:1:33: gear.jarstore.max-bundle-size: "4 jiggabytes" is not a size (want e.g. 1024, 64KiB, 512MB, 4GB, 1g; K/M/G/Ki/MiB are powers of 1024, kB/MB/GB of 1000)`}},
		{"raft segment too small", "gear.raft.segment-size = 4KiB", nil, nil,
			[]string{`F:1:26: gear.raft.segment-size: 4KiB is out of range (want 64KiB to 1GiB, e.g. 8MiB; a master needs this much free space in its data dir for the next log segment)`}},
		{"log nowhere", "gear.log.stderr = false", nil, nil,
			[]string{`F:1:19: gear.log.stderr: is false but gear.log.file is empty: the daemon would log nowhere (set gear.log.file, or stderr = true)`}},
		{"log sizes", "gear.log { max-size = 1KiB, max-backups = -1 }", nil, nil,
			[]string{
				`F:1:23: gear.log.max-size: 1024 bytes is too small (want at least 1MiB, e.g. 100MiB)`,
				`F:1:43: gear.log.max-backups: -1 must not be negative (0 = keep every rotated file)`,
			}},
		{"worker users", "gear.worker { user = \"app user\", allowed-users = [web, \"a/b\"] }", nil, nil,
			[]string{
				`F:1:22: gear.worker.user: "app user" is not a user name (want e.g. "gear" or "gear:gear" for user:group)`,
				`F:1:56: gear.worker.allowed-users: "a/b" is not a user name (want e.g. "gear" or "gear:gear" for user:group)`,
			}},
		{"limits", "gear.limits { instances-per-process = 0, executors = -5 }", nil, nil,
			[]string{
				`F:1:39: gear.limits.instances-per-process: 0 must be at least 1`,
				`F:1:54: gear.limits.executors: -5 must be at least 1`,
			}},
		{"enum", "gear.executor.restart = sometimes\ngear.log { level = loud, format = xml }", nil, nil,
			[]string{
				`F:1:25: gear.executor.restart: "sometimes" is not valid (want one of "always", "on-failure", "never")`,
				`F:2:20: gear.log.level: "loud" is not valid (want one of "debug", "info", "warn", "error")`,
				`F:2:35: gear.log.format: "xml" is not valid (want one of "text", "json")`,
			}},
		{"type errors", "gear.hostname = [a]\ngear.executor.max-restarts = many\ngear.channel.tls = maybe\ngear.worker.cpus = [0, x]", nil, nil,
			[]string{
				`F:1:17: gear.hostname: want a string, found a list`,
				`F:2:30: gear.executor.max-restarts: want an integer, found "many"`,
				`F:3:20: gear.channel.tls: want true or false (or on/off, yes/no), found "maybe"`,
				`F:4:24: gear.worker.cpus: element 1: want an integer, found "x"`,
			}},
		{"backoff order", "gear.executor { backoff-min = 2s, backoff-max = 1s }", nil, nil,
			[]string{`F:1:49: gear.executor.backoff-max: 1s is less than gear.executor.backoff-min (2s)`}},
		{"hostname with port", "gear.hostname = \"node1:3000\"", nil, nil,
			[]string{`F:1:17: gear.hostname: "node1:3000" must be a host name or IP without a port (the port comes from -port or gear.cluster.masters)`}},
		{"env and override errors", "", []string{"GEAR_MASTERS=node1", "GEAR_WORKER_HEARTBEAT_INTERVAL=5s"}, map[string]any{"gear.hostnme": "x", "gear.log.level": "chatty"},
			[]string{
				`env GEAR_MASTERS: gear.cluster.masters: "node1" has no port (want host:port, e.g. "node1:3000")`,
				`env GEAR_WORKER_HEARTBEAT_INTERVAL: gear.worker.heartbeat-interval: 5s is more than half of gear.failover.timeout (6s): one late heartbeat would look like a dead worker`,
				`override: gear.hostnme: unknown key, did you mean gear.hostname?`,
				`override: gear.log.level: "chatty" is not valid (want one of "debug", "info", "warn", "error")`,
			}},
		{"sentinel without addrs", "gear.channel.sentinel-master = mymaster", nil, nil,
			[]string{`gear.channel.sentinel-addrs: is empty but gear.channel.sentinel-master is "mymaster" (list the sentinels, e.g. ["s1:26379"])`}},
		{"syntax error", "gear {\n  hostname \"x\"\n}", nil, nil,
			[]string{`F:2:12: gear.hostname: expected '=' , ':' or '{' after key "hostname", found '"'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeConf(t, tt.src)
			_, _, err := Load(LoadOptions{File: file, Env: tt.env, Overrides: tt.overrides})
			if err == nil {
				t.Fatal("want an error")
			}
			want := strings.ReplaceAll(strings.Join(tt.want, "\n"), "F:", file+":")
			if got := err.Error(); !sameLines(got, want) {
				t.Errorf("error:\n got  %s\n want %s", got, want)
			}
		})
	}
}

// sameLines compares multi-line errors as sets of lines in order-insensitive
// fashion for lines without a file position (env/override/default).
func sameLines(got, want string) bool {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		return false
	}
	seen := map[string]int{}
	for _, l := range g {
		seen[l]++
	}
	for _, l := range w {
		if seen[l] == 0 {
			return false
		}
		seen[l]--
	}
	return true
}

func TestFileErrorsSortedByPosition(t *testing.T) {
	file := writeConf(t, "gear.log.level = x\ngear.hostname = \"\"\n")
	_, _, err := Load(LoadOptions{File: file})
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], file+":1:") || !strings.HasPrefix(lines[1], file+":2:") {
		t.Errorf("want errors in file order, got %q", lines)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Pos.Line == 0 {
		t.Errorf("want *FieldError with a position, got %#v", fe)
	}
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
		err  string
	}{
		{"node1:3000", "node1", 3000, ""},
		{"10.0.0.1:1", "10.0.0.1", 1, ""},
		{"[::1]:3000", "::1", 3000, ""},
		{"node1", "", 0, `"node1" has no port (want host:port, e.g. "node1:3000")`},
		{"", "", 0, `empty address (want host:port, e.g. "node1:3000")`},
		{":3000", "", 0, `":3000" has no host (want host:port, e.g. "node1:3000")`},
		{"node1:0", "", 0, `"node1:0" has an invalid port "0" (want a number from 1 to 65535)`},
		{"node1:70000", "", 0, `"node1:70000" has an invalid port "70000" (want a number from 1 to 65535)`},
		{"::1", "", 0, `"::1" is not host:port (want e.g. "node1:3000", IPv6 as "[::1]:3000")`},
		{"a b:1", "", 0, `"a b:1" has an invalid host "a b" (want host:port, e.g. "node1:3000")`},
	}
	for _, tt := range tests {
		h, p, err := ParseHostPort(tt.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if h != tt.host || p != tt.port || gotErr != tt.err {
			t.Errorf("ParseHostPort(%q) = %q, %d, %q; want %q, %d, %q", tt.in, h, p, gotErr, tt.host, tt.port, tt.err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"10s", 10 * time.Second, true},
		{"500ms", 500 * time.Millisecond, true},
		{"300 s", 300 * time.Second, true},
		{"10 seconds", 10 * time.Second, true},
		{"2m", 2 * time.Minute, true},
		{"1h", time.Hour, true},
		{"1.5h", 90 * time.Minute, true},
		{"1d", 24 * time.Hour, true},
		{"250", 250 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"15 minutes", 15 * time.Minute, true},
		{"10 ns", 10, true},
		{"", 0, false},
		{"s", 0, false},
		{"ten seconds", 0, false},
		{"10 parsecs", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for _, d := range []time.Duration{0, time.Nanosecond, 1500 * time.Microsecond, 250 * time.Millisecond, 6 * time.Second, 90 * time.Second, time.Hour, 36 * time.Hour} {
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q parses back to %v, %v", d, FormatDuration(d), back, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true},
		{"512MB", 512e6, true},
		{"4GB", 4e9, true},
		{"4 GB", 4e9, true},
		{"1g", 1 << 30, true},
		{"1G", 1 << 30, true},
		{"64KiB", 64 << 10, true},
		{"10M", 10 << 20, true},
		{"1.5KiB", 1536, true},
		{"10b", 10, true},
		{"-1", 0, false},
		{"lots", 0, false},
		{"1 XB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for _, n := range []int64{0, 1, 1000, 1024, 4e9, 10e6, 3 << 30, 1234567} {
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("FormatSize(%d) = %q parses back to %d, %v", n, FormatSize(n), back, err)
		}
	}
}

func TestJSON(t *testing.T) {
	c := Default()
	c.Token = "secret"
	b, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(Keys()) {
		t.Errorf("JSON has %d keys, want %d", len(m), len(Keys()))
	}
	for key, want := range map[string]any{
		"gear.auth.token":                   Redacted,
		"gear.gossip.key":                   "",
		"gear.failover.timeout":             "6s",
		"gear.jarstore.max-bundle-size":     4e9,
		"gear.cluster.masters":              []any{"127.0.0.1:3000"},
		"gear.worker.cpus":                  []any{},
		"gear.worker.stop-after-disconnect": "0s",
	} {
		if !reflect.DeepEqual(m[key], want) {
			t.Errorf("%s = %#v, want %#v", key, m[key], want)
		}
	}
	if !strings.Contains(string(b), "\n  \"gear.") {
		t.Error("want indented output")
	}
	if v, err := c.Value("gear.executor.log-max-size"); err != nil || v != "10MB" {
		t.Errorf("Value = %v, %v", v, err)
	}
	if _, err := c.Value("gear.log.levle"); err == nil || !strings.Contains(err.Error(), "did you mean gear.log.level?") {
		t.Errorf("Value(typo) err = %v", err)
	}
}

func TestEnvNames(t *testing.T) {
	for key, want := range map[string]string{
		"gear.failover.timeout":             "GEAR_FAILOVER_TIMEOUT",
		"gear.worker.stop-after-disconnect": "GEAR_WORKER_STOP_AFTER_DISCONNECT",
		"gear.cluster.masters":              "GEAR_CLUSTER_MASTERS",
	} {
		if got := EnvName(key); got != want {
			t.Errorf("EnvName(%s) = %s, want %s", key, got, want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, p := range []string{shippedConf, "../hocon/testdata/gearpump-full.conf"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("gear.cluster.masters = [node1]\ngear.worker.cpus = [\"3-1\"]\ngear.failover.timeout = 99999999999999999d")
	f.Add("gearpump-master.akka.cluster.auto-down-unreachable-after = 1 nanos\ngear.jarstore.max-bundle-size = 1e30")
	f.Add("\"\x1b]0;x\x07\" = 1\n\"gearpump-\x1b[2J\".a = 1\ngear.hostname = \"\x00\x1b\"\n\xff\xfe = 2")
	f.Fuzz(func(t *testing.T, src string) {
		read := func(p string) ([]byte, error) {
			if p == "fuzz.conf" {
				return []byte(src), nil
			}
			return nil, os.ErrNotExist
		}
		c, rep, err := load(LoadOptions{File: "fuzz.conf", Env: []string{"X=1"}}, read)
		if rep == nil {
			t.Fatal("nil report")
		}
		if (c == nil) == (err == nil) {
			t.Fatalf("config %v and error %v: want exactly one", c, err)
		}
		// What config check prints must be safe on a terminal.
		msgs := append(append([]string{}, rep.Warnings...), rep.Info...)
		if err != nil {
			msgs = append(msgs, err.Error())
		}
		for _, m := range msgs {
			if !utf8.ValidString(m) || strings.ContainsFunc(m, func(r rune) bool { return r != '\n' && r != '\t' && !unicode.IsPrint(r) }) {
				t.Fatalf("message holds raw bytes: %q", m)
			}
		}
		if c == nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned a config that does not validate: %v", err)
		}
		if _, err := c.JSON(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReportLog(t *testing.T) {
	var buf strings.Builder
	l := slog.New(slog.NewTextHandler(&buf, nil))
	rep := &Report{Warnings: []string{"w1"}, Info: []string{"i1"}, Sources: []string{"a.conf"}}
	rep.Log(context.Background(), l)
	out := buf.String()
	for _, want := range []string{"level=WARN msg=w1", "level=INFO msg=i1", "files=[a.conf]"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output %q lacks %q", out, want)
		}
	}
}

// Report.Origin says which layer set each key last; keys left at their
// default are absent.
func TestReportOrigin(t *testing.T) {
	p := writeConf(t, "gear.cluster.masters = [\"a:1\"]\ngear.auth.token = t\n")
	_, rep, err := Load(LoadOptions{File: p, Env: []string{"GEAR_TOKEN=s"}, Overrides: map[string]any{"gear.log.level": "debug"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"gear.cluster.masters": p + ":1:24",
		"gear.auth.token":      "env GEAR_TOKEN",
		"gear.log.level":       "override",
	}
	for k, w := range want {
		if got := rep.Origin[k]; got != w {
			t.Errorf("Origin[%s] = %q, want %q", k, got, w)
		}
	}
	if o, ok := rep.Origin["gear.failover.timeout"]; ok {
		t.Errorf("a default has an origin: %q", o)
	}
}
