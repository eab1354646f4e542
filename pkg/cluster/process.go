package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RestartPolicy says whether an executor is started again after its
// process exits on its own. It is the one definition of the policy: the
// manifest parser, gear.conf's gear.executor.restart, the API and the
// worker's supervisor (pkg/procs) all use this type and its check.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "always"     // restart after any exit
	RestartOnFailure RestartPolicy = "on-failure" // restart unless the exit code was 0
	RestartNever     RestartPolicy = "never"      // never restart
)

// RestartPolicies are the valid policies, in the order help texts list them.
var RestartPolicies = []RestartPolicy{RestartAlways, RestartOnFailure, RestartNever}

// ParseRestartPolicy reads a policy as written in gear-app.conf or
// gear.conf. The empty string is refused: write the policy out.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	r := RestartPolicy(s)
	if !slices.Contains(RestartPolicies, r) {
		return "", fmt.Errorf("%q is not a restart policy: want always, on-failure or never", s)
	}
	return r, nil
}

// Check accepts one of RestartPolicies, or "" for the worker's default
// (gear.executor.restart).
func (r RestartPolicy) Check() error {
	if r == "" {
		return nil
	}
	_, err := ParseRestartPolicy(string(r))
	return err
}

// Health is the health check of a process instance, as written in
// gear-app.conf's health {} block. It travels with the process definition
// to the worker in every Assignment, and the worker runs it (worker/health.go):
// exactly one of HTTP, TCP and Command is set.
//
//   - HTTP: GET http://<worker ip>:<port><path> passes on a 2xx or 3xx
//     status whose body contains Body (when Body is set): cluster2's
//     validator.
//   - TCP: a TCP connect to the port passes.
//   - Command: the command, run in the executor's directory with its
//     environment, passes when it exits 0.
//
// Port 0 means the instance's own $PORT (the worker always gives each
// instance one): with listen = [...] every instance accepts on the shared
// port, so a check on it reaches whichever instance accepts; serve the
// check on $PORT to check one instance.
type Health struct {
	HTTP     string        `json:"http,omitempty"` // path, e.g. "/ecv"
	TCP      bool          `json:"tcp,omitempty"`
	Command  []string      `json:"command,omitempty"`
	Port     int           `json:"port,omitempty"`
	Body     string        `json:"body,omitempty"`     // HTTP: the body must contain it
	Interval time.Duration `json:"interval,omitempty"` // 0: DefaultHealthInterval
	Timeout  time.Duration `json:"timeout,omitempty"`  // 0: DefaultHealthTimeout
	Failures int           `json:"failures,omitempty"` // failures in a row before unhealthy; 0: DefaultHealthFailures
	Grace    time.Duration `json:"grace,omitempty"`    // after a start, failures do not count; 0: none
}

// Health check defaults for zero Health fields.
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
	DefaultHealthFailures = 3
)

// WithDefaults fills the zero interval, timeout and failures.
func (h Health) WithDefaults() Health {
	if h.Interval <= 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.Failures <= 0 {
		h.Failures = DefaultHealthFailures
	}
	return h
}

// Kind names the check: "http", "tcp" or "command" ("" when none is set).
func (h Health) Kind() string {
	switch {
	case h.HTTP != "":
		return "http"
	case h.TCP:
		return "tcp"
	case len(h.Command) > 0:
		return "command"
	}
	return ""
}

// HealthStatus is an executor's health as the worker last checked it.
type HealthStatus string

// Health states. An executor without a check, or in its start grace, or
// not checked yet, is unknown.
const (
	HealthUnknown HealthStatus = "unknown"
	HealthPassing HealthStatus = "passing"
	HealthFailing HealthStatus = "failing"
)

// ValidName checks an application's manifest name or a process group name:
// 1-64 characters from [A-Za-z0-9_-], starting with a letter or digit.
// Executor ids are "<app>.<process>.<index>", so a name never holds a dot.
func ValidName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("name %q must be 1-64 characters", s)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return fmt.Errorf("name %q: only letters, digits, '-' and '_' are allowed (starting with a letter or digit)", s)
		}
	}
	return nil
}

// ValidEnvName reports whether s can name an environment variable: letters,
// digits and '_', not starting with a digit.
func ValidEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidateProcesses checks an application's process groups: at least one,
// each valid (Process.Validate), no name twice. The CLI calls it before it
// uploads a bundle and the master calls it on every submit, so both refuse
// the same things with the same words.
func ValidateProcesses(ps []Process) error {
	if len(ps) == 0 {
		return errors.New(`the application has no process groups (gear-app.conf needs processes { NAME { command = [...] } })`)
	}
	seen := make(map[string]bool, len(ps))
	var errs []error
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("process group %q is listed twice", p.Name))
		}
		seen[p.Name] = true
	}
	return errors.Join(errs...)
}

// Validate checks one process group as the worker will need it. Zero
// values mean "the worker's default" and pass.
func (p Process) Validate() error {
	if err := ValidName(p.Name); err != nil {
		return fmt.Errorf("process group: %w", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("process group %q: %s", p.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case len(p.Command) == 0 || p.Command[0] == "":
		return bad(`has no command: give the program and its arguments, e.g. command = ["./server"]`)
	case p.Instances < 0:
		return bad("instances must not be negative, got %d", p.Instances)
	case p.CPUs < 0:
		return bad("cpus must not be negative, got %d", p.CPUs)
	case p.MaxRestarts < 0:
		return bad("max-restarts must not be negative, got %d", p.MaxRestarts)
	case p.MaxRSS < 0:
		return bad("max-rss must not be negative, got %d", p.MaxRSS)
	case p.Memory < 0 || p.Memory > 0 && p.Memory < 4<<20:
		return bad("memory must be at least 4MiB (or unset: no limit), got %d bytes", p.Memory)
	case p.MaxPids < 0:
		return bad("max-pids must not be negative, got %d", p.MaxPids)
	case p.StopTimeout < 0 || p.MaxAge < 0 || p.MinUptime < 0 || p.RestartWindow < 0:
		return bad("stop-timeout, max-age, min-uptime and restart-window must not be negative")
	case len(p.PreStop) > 0 && p.PreStop[0] == "":
		return bad(`pre-stop has no program: remove it or give a command, e.g. ["./drain.sh"]`)
	}
	if err := p.Restart.Check(); err != nil {
		return bad("restart: %v", err)
	}
	if p.Reschedule != nil {
		if err := p.Reschedule.Check(); err != nil {
			return bad("reschedule: %v", err)
		}
	}
	for name := range p.Env {
		if !ValidEnvName(name) {
			return bad("env %q is not a valid environment variable name (letters, digits, _; not starting with a digit)", name)
		}
	}
	for i, port := range p.Ports {
		if port < 1 || port > 65535 {
			return bad("ports: %d is not a port (1-65535)", port)
		}
		if slices.Contains(p.Ports[:i], port) {
			return bad("ports: %d is listed twice", port)
		}
	}
	for i, port := range p.Listen {
		if port < 1 || port > 65535 {
			return bad("listen: %d is not a port (1-65535)", port)
		}
		if slices.Contains(p.Listen[:i], port) || slices.Contains(p.Ports, port) {
			return bad("listen: %d is listed twice (in listen or in ports): listen is for ports the worker opens and passes, ports for ports the program binds itself", port)
		}
	}
	if h := p.Health; h != nil {
		kinds := 0
		for _, set := range []bool{h.HTTP != "", h.TCP, len(h.Command) > 0} {
			if set {
				kinds++
			}
		}
		switch {
		case kinds != 1:
			return bad(`health: give exactly one check: http = "/path", tcp = true or command = ["./check"]`)
		case h.HTTP != "" && !strings.HasPrefix(h.HTTP, "/"):
			return bad(`health: http must be an HTTP path starting with "/", e.g. "/ecv", got %q`, h.HTTP)
		case len(h.Command) > 0 && h.Command[0] == "":
			return bad(`health: command has no program, e.g. command = ["./check"]`)
		case h.Port < 0 || h.Port > 65535:
			return bad("health: port %d is not a port (1-65535; leave it out for the instance's $PORT)", h.Port)
		case h.Body != "" && h.HTTP == "":
			return bad("health: body is only for http checks")
		case h.Interval < 0 || h.Timeout < 0 || h.Grace < 0 || h.Failures < 0:
			return bad("health: interval, timeout, grace and failures must not be negative")
		}
	}
	return nil
}

// FormatInts joins numbers with commas ("0,2,3"): the form of GEAR_CPUS
// and GEAR_PORTS in an executor's environment and of the CLI's tables.
func FormatInts(xs []int) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}
