package cluster

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRestartPolicy(t *testing.T) {
	for _, r := range RestartPolicies {
		got, err := ParseRestartPolicy(string(r))
		if err != nil || got != r {
			t.Errorf("ParseRestartPolicy(%q) = %q, %v", r, got, err)
		}
		if err := r.Check(); err != nil {
			t.Errorf("%q.Check() = %v", r, err)
		}
	}
	for _, s := range []string{"", "Always", "sometimes", "on_failure"} {
		if _, err := ParseRestartPolicy(s); err == nil || !strings.Contains(err.Error(), "always, on-failure or never") {
			t.Errorf("ParseRestartPolicy(%q) = %v, want an error listing the policies", s, err)
		}
	}
	if err := RestartPolicy("").Check(); err != nil {
		t.Errorf(`"" (the worker's default) must pass Check: %v`, err)
	}
	if err := RestartPolicy("sometimes").Check(); err == nil {
		t.Error(`Check accepted "sometimes"`)
	}
}

func TestValidateProcesses(t *testing.T) {
	ok := func() Process {
		return Process{Name: "web", Command: []string{"./server"}, Instances: 2, CPUs: 1, Restart: RestartOnFailure,
			Env: map[string]string{"A_1": "x"}, Ports: []int{8080}, PreStop: []string{"./drain"},
			Health: &Health{HTTP: "/ecv", Port: 8080, Interval: time.Second}}
	}
	if err := ValidateProcesses([]Process{ok(), {Name: "job", Command: []string{"x"}}}); err != nil {
		t.Fatalf("valid processes refused: %v", err)
	}
	tests := []struct {
		name   string
		change func(p *Process)
		want   string
	}{
		{"bad name", func(p *Process) { p.Name = "a.b" }, `name "a.b"`},
		{"no name", func(p *Process) { p.Name = "" }, "1-64 characters"},
		{"no command", func(p *Process) { p.Command = nil }, "has no command"},
		{"empty program", func(p *Process) { p.Command = []string{""} }, "has no command"},
		{"negative instances", func(p *Process) { p.Instances = -1 }, "instances"},
		{"negative cpus", func(p *Process) { p.CPUs = -1 }, "cpus"},
		{"bad restart", func(p *Process) { p.Restart = "sometimes" }, `"sometimes" is not a restart policy`},
		{"bad env", func(p *Process) { p.Env = map[string]string{"1X": "y"} }, `env "1X"`},
		{"bad port", func(p *Process) { p.Ports = []int{70000} }, "70000 is not a port"},
		{"port twice", func(p *Process) { p.Ports = []int{80, 80} }, "listed twice"},
		{"negative duration", func(p *Process) { p.MaxAge = -time.Second }, "must not be negative"},
		{"negative max-rss", func(p *Process) { p.MaxRSS = -1 }, "max-rss"},
		{"empty pre-stop", func(p *Process) { p.PreStop = []string{""} }, "pre-stop"},
		{"health path", func(p *Process) { p.Health.HTTP = "ecv" }, "health: http"},
		{"health port", func(p *Process) { p.Health.Port = 70000 }, "health: port"},
		{"health two checks", func(p *Process) { p.Health.TCP = true }, "exactly one check"},
		{"health body on tcp", func(p *Process) { p.Health.HTTP, p.Health.TCP, p.Health.Body = "", true, "ok" }, "body is only for http"},
		{"listen bad port", func(p *Process) { p.Listen = []int{0} }, "listen: 0 is not a port"},
		{"listen in ports too", func(p *Process) { p.Listen = []int{p.Ports[0]} }, "listed twice"},
	}
	for _, tt := range tests {
		p := ok()
		tt.change(&p)
		err := ValidateProcesses([]Process{p})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if err := ValidateProcesses(nil); err == nil || !strings.Contains(err.Error(), "no process groups") {
		t.Errorf("no processes: %v", err)
	}
	if err := ValidateProcesses([]Process{ok(), ok()}); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("twice: %v", err)
	}
}

// TestProcessJSONCompatible: Process is replicated and part of the API, so
// its JSON field names only grow.
func TestProcessJSONCompatible(t *testing.T) {
	p := Process{Name: "n", Command: []string{"c"}, Instances: 1, CPUs: 1, Shared: true, Restart: RestartNever,
		Env: map[string]string{"A": "b"}, Ports: []int{1}, StopTimeout: 1, PreStop: []string{"p"}, MaxAge: 1, MaxRSS: 1,
		MinUptime: 1, MaxRestarts: 1, RestartWindow: 1, Health: &Health{HTTP: "/", Port: 1, Interval: 1, Timeout: 1}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "command", "instances", "cpus", "shared", "restart", "env", "ports", "stop_timeout",
		"pre_stop", "max_age", "max_rss", "min_uptime", "max_restarts", "restart_window", "health"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q is missing from %s", k, b)
		}
	}
	if m["restart"] != "never" {
		t.Errorf("restart encodes as %v, want the plain string", m["restart"])
	}
	var back Process
	if err := json.Unmarshal(b, &back); err != nil || back.Health == nil || !reflect.DeepEqual(*back.Health, *p.Health) || !slices.Equal(back.Command, p.Command) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestFormatInts(t *testing.T) {
	for _, tt := range []struct {
		in   []int
		want string
	}{{nil, ""}, {[]int{3}, "3"}, {[]int{0, 2, 3}, "0,2,3"}} {
		if got := FormatInts(tt.in); got != tt.want {
			t.Errorf("FormatInts(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
