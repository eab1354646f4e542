package bundle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/hocon"
)

const fullManifest = `# the web app
name = "web"
processes {
  web {
    command   = ["./server", "-port", "${PORT}"]
    instances = 2
    cpus      = 1
    shared    = false
    restart   = "always"
    env       = { KEY = "v", N = 3 }
    ports     = [8080]
    stop-timeout = 10s, pre-stop = ["./drain.sh"], max-age = 0, max-rss = 512MiB
    min-uptime = 5s
    max-restarts = 10
    restart-window = "2 minutes"
    health { http = "/ecv", interval = 2s }
  }
  worker {
    command = [./worker]
    restart = on-failure
  }
}
`

func TestParseManifestFull(t *testing.T) {
	m, err := ParseManifest([]byte(fullManifest), "gear-app.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{Name: "web", Processes: []cluster.Process{
		{
			Name: "web", Command: []string{"./server", "-port", "${PORT}"}, Instances: 2, CPUs: 1,
			Restart: "always", Env: map[string]string{"KEY": "v", "N": "3"}, Ports: []int{8080},
			StopTimeout: 10 * time.Second, PreStop: []string{"./drain.sh"}, MaxRSS: 512 << 20,
			MinUptime: 5 * time.Second, MaxRestarts: 10, RestartWindow: 2 * time.Minute,
			Health: &cluster.Health{HTTP: "/ecv", Port: 8080, Interval: 2 * time.Second},
		},
		{Name: "worker", Command: []string{"./worker"}, Instances: 1, Restart: "on-failure"},
	}}
	// The worker process sorts after web.
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("ParseManifest =\n%+v\nwant\n%+v", m, want)
	}
	if p, ok := m.Process("worker"); !ok || p.Restart != "on-failure" {
		t.Fatalf("Process(worker) = %+v, %v", p, ok)
	}
}

func TestParseManifestErrors(t *testing.T) {
	cases := []struct {
		name, conf string
		want       []string // substrings of the error
	}{
		{"no processes block", `name = "a"`, []string{"processes: missing"}},
		{"empty processes", "name = a\nprocesses {}", []string{"processes: has no processes"}},
		{"negative instances", "name = a\nprocesses { p { command = [x]\n instances = -1 } }", []string{"app.conf:3:14: processes.p.instances: must not be negative, got -1"}},
		{"bad restart", "name = a\nprocesses.p { command = [x], restart = sometimes }", []string{`processes.p.restart: "sometimes" is not a restart policy: want always, on-failure or never`}},
		{"unknown key suggestion", "name = a\nprocesses.p { command = [x], instance = 2 }", []string{`processes.p.instance: unknown key (did you mean "instances"?)`}},
		{"unknown top key", "name = a\nproceses.p.command = [x]", []string{`proceses: unknown key (did you mean "processes"?)`, "processes: missing"}},
		{"missing command", "name = a\nprocesses.p { instances = 1 }", []string{"processes.p: missing command"}},
		{"command string", "name = a\nprocesses.p { command = \"./x -y\" }", []string{"processes.p.command: must be a list of strings"}},
		{"empty command", "name = a\nprocesses.p { command = [] }", []string{"processes.p.command: is empty"}},
		{"bad duration", "name = a\nprocesses.p { command = [x], stop-timeout = 10 }", []string{"stop-timeout: 10 has no unit"}},
		{"bad size", "name = a\nprocesses.p { command = [x], max-rss = lots }", []string{`max-rss: "lots" is not a size`}},
		{"health two checks", "name = a\nprocesses.p { command = [x], health { http = /x, tcp = true } }", []string{"give exactly one check"}},
		{"health no check", "name = a\nprocesses.p { command = [x], health { interval = 1s } }", []string{"give exactly one check"}},
		{"health body without http", "name = a\nprocesses.p { command = [x], health { tcp = true, body = ok } }", []string{"health.body: must be a string"}},
		{"health failures", "name = a\nprocesses.p { command = [x], health { tcp = true, failures = 0 } }", []string{"health.failures: must be between 1 and 1000"}},
		{"bad listen", "name = a\nprocesses.p { command = [x], listen = [0, 8080, 8080] }", []string{"listen: element 0: 0 is not a port", "port 8080 is listed twice"}},
		{"health path", "name = a\nprocesses.p { command = [x], ports = [1], health { http = x } }", []string{"health.http: must be an HTTP path"}},
		{"bad port", "name = a\nprocesses.p { command = [x], ports = [0, 70000, 80, 80] }", []string{"element 0: 0 is not a port", "element 1: 70000", "port 80 is listed twice"}},
		{"bad env name", "name = a\nprocesses.p { command = [x], env { \"1X\" = y } }", []string{"is not a valid environment variable name"}},
		{"bad name", "name = \"my app\"\nprocesses.p.command = [x]", []string{"name: name \"my app\""}},
		{"missing name", "processes.p.command = [x]", []string{"name: missing"}},
		{"env substitution refused", "name = a\nprocesses.p.command = [${HOME}]", []string{"HOME"}},
		{"include refused", "include required(\"/etc/passwd\")\nname = a", []string{"cannot include files"}},
		{"syntax error", "name = a\nprocesses { p { command = [x }", []string{"app.conf:2:"}},
		{"instances not a number", "name = a\nprocesses.p { command = [x], instances = many }", []string{"instances: must be a whole number"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(c.conf), "app.conf")
			if err == nil {
				t.Fatalf("ParseManifest succeeded: %+v", m)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseManifestErrorPositions(t *testing.T) {
	conf := "name = a\nprocesses {\n  p {\n    command = [x]\n    restart = \"bogus\"\n    cpus = -2\n  }\n}\n"
	_, err := ParseManifest([]byte(conf), "gear-app.conf")
	var list hocon.ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("want a hocon.ErrorList of 2 errors, got %T %v", err, err)
	}
	if got := list[0].Pos.String() + " " + list[0].Key; got != "gear-app.conf:5:15 processes.p.restart" {
		t.Errorf("first error at %q", got)
	}
	if got := list[1].Pos.String() + " " + list[1].Key; got != "gear-app.conf:6:12 processes.p.cpus" {
		t.Errorf("second error at %q", got)
	}
}

func TestParseDurationAndSize(t *testing.T) {
	durs := []struct {
		in   any
		want time.Duration
		err  bool
	}{
		{"10s", 10 * time.Second, false}, {"500ms", 500 * time.Millisecond, false}, {"1m30s", 90 * time.Second, false},
		{"300 s", 300 * time.Second, false}, {"2 minutes", 2 * time.Minute, false}, {"1d", 24 * time.Hour, false},
		{int64(0), 0, false}, {"0", 0, false}, {int64(5), 0, true}, {"-1s", 0, true}, {"soon", 0, true}, {true, 0, true},
		{"1e300 h", 0, true},
	}
	for _, c := range durs {
		got, err := ParseDuration(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseDuration(%v) = %v, %v", c.in, got, err)
		}
	}
	sizes := []struct {
		in   any
		want int64
		err  bool
	}{
		{int64(1024), 1024, false}, {"512MB", 512e6, false}, {"512M", 512 << 20, false}, {"1GiB", 1 << 30, false},
		{"1.5 KiB", 1536, false}, {"2g", 2 << 30, false}, {"10 bytes", 10, false}, {int64(-1), 0, true}, {"1XB", 0, true},
		{"9e30 TB", 0, true},
	}
	for _, c := range sizes {
		got, err := ParseSize(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseSize(%v) = %v, %v", c.in, got, err)
		}
	}
}
