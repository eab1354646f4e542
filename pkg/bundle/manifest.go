package bundle

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/hocon"
)

// ManifestName is the manifest file at the root of a .tar.gz/.zip bundle.
const ManifestName = "gear-app.conf"

// MaxManifestSize bounds gear-app.conf.
const MaxManifestSize = 1 << 20

// Manifest is a parsed gear-app.conf (or the one synthesised for a jar).
// Its process groups are cluster.Process values, the one definition of a
// process that the API, the masters and the workers share.
type Manifest struct {
	Name      string
	Processes []cluster.Process // sorted by Name
}

// Process returns the process named name.
func (m *Manifest) Process(name string) (*cluster.Process, bool) {
	for i := range m.Processes {
		if m.Processes[i].Name == name {
			return &m.Processes[i], true
		}
	}
	return nil, false
}

var (
	topKeys     = []string{"name", "processes"}
	processKeys = []string{"command", "instances", "cpus", "shared", "restart", "env", "ports", "listen", "stop-timeout",
		"pre-stop", "max-age", "max-rss", "min-uptime", "max-restarts", "restart-window", "health", "user", "reschedule", "memory", "max-pids"}
	healthKeys     = []string{"http", "tcp", "command", "port", "body", "interval", "timeout", "failures", "grace"}
	rescheduleKeys = []string{"attempts", "interval", "delay", "delay-function", "max-delay"}
)

// manifestParser collects every error of one manifest.
type manifestParser struct {
	doc      *hocon.Document
	filename string
	errs     hocon.ErrorList
}

// pos finds where key (a leaf or an object) was written.
func (p *manifestParser) pos(key string) hocon.Pos {
	if ps, ok := p.doc.Pos(key); ok {
		return ps
	}
	var best hocon.Pos
	for _, k := range p.doc.Keys() {
		if strings.HasPrefix(k, key+".") {
			if ps, ok := p.doc.Pos(k); ok && (!best.IsValid() || ps.Line < best.Line || ps.Line == best.Line && ps.Col < best.Col) {
				best = ps
			}
		}
	}
	if !best.IsValid() {
		// A missing key: point at the start of the file.
		best = hocon.Pos{File: p.filename, Line: 1, Col: 1}
	}
	return best
}

func (p *manifestParser) errorf(key, format string, args ...any) {
	p.errs = append(p.errs, &hocon.Error{Pos: p.pos(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// ParseManifest parses gear-app.conf. Errors name file:line:col and the
// key; all problems are reported at once (as a hocon.ErrorList). A manifest
// cannot include other files or read the environment: ${VAR} in quoted
// strings is left for the worker to expand, unquoted ${VAR} is an error.
func ParseManifest(data []byte, filename string) (*Manifest, error) {
	if filename == "" {
		filename = ManifestName
	}
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%s: manifest is %d bytes, larger than the %d allowed", filename, len(data), MaxManifestSize)
	}
	doc, err := hocon.ParseWith(data, filename, hocon.Options{
		LookupEnv: func(string) (string, bool) { return "", false },
		ReadFile: func(path string) ([]byte, error) {
			return nil, fmt.Errorf("include %q: a bundle manifest cannot include files; put everything in %s", path, ManifestName)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w", ManifestName, err)
	}
	p := &manifestParser{doc: doc, filename: filename}
	m := p.manifest(doc.Map())
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i].Pos, p.errs[j].Pos
			return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
		})
		return nil, fmt.Errorf("invalid %s: %w", ManifestName, p.errs)
	}
	return m, nil
}

func (p *manifestParser) unknownKeys(prefix string, m map[string]any, valid []string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(valid, k) {
			continue
		}
		full := hocon.JoinKey(k)
		if prefix != "" {
			full = prefix + "." + full
		}
		if s := suggest(k, valid); s != "" {
			p.errorf(full, "unknown key (did you mean %q?)", s)
		} else {
			p.errorf(full, "unknown key (valid keys: %s)", strings.Join(valid, ", "))
		}
	}
}

func (p *manifestParser) manifest(root map[string]any) *Manifest {
	m := &Manifest{}
	p.unknownKeys("", root, topKeys)
	if v, ok := root["name"]; !ok {
		p.errorf("name", `missing: give the application a name, e.g. name = "web"`)
	} else if s, ok := v.(string); !ok {
		p.errorf("name", "must be a string, got %s", describe(v))
	} else if err := cluster.ValidName(s); err != nil {
		p.errorf("name", "%v", err)
	} else {
		m.Name = s
	}
	procs, ok := root["processes"]
	if !ok {
		p.errorf("processes", `missing: define at least one process, e.g. processes { web { command = ["./server"] } }`)
		return m
	}
	pm, ok := procs.(map[string]any)
	if !ok {
		p.errorf("processes", "must be an object of process groups, got %s", describe(procs))
		return m
	}
	if len(pm) == 0 {
		p.errorf("processes", `has no processes: define at least one, e.g. web { command = ["./server"] }`)
		return m
	}
	names := make([]string, 0, len(pm))
	for n := range pm {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		key := "processes." + hocon.JoinKey(n)
		if err := cluster.ValidName(n); err != nil {
			p.errorf(key, "process name: %v", err)
			continue
		}
		obj, ok := pm[n].(map[string]any)
		if !ok {
			p.errorf(key, "must be an object with at least a command, got %s", describe(pm[n]))
			continue
		}
		m.Processes = append(m.Processes, p.process(key, n, obj))
	}
	return m
}

func (p *manifestParser) process(key, name string, o map[string]any) cluster.Process {
	pr := cluster.Process{Name: name, Instances: 1, Restart: cluster.RestartAlways}
	p.unknownKeys(key, o, processKeys)
	k := func(s string) string { return key + "." + s }

	if v, ok := o["command"]; !ok {
		p.errorf(key, `missing command, e.g. command = ["./server", "-port", "${PORT}"]`)
	} else if cmd, ok := p.strings(k("command"), v); ok {
		if len(cmd) == 0 || cmd[0] == "" {
			p.errorf(k("command"), `is empty: give the program and its arguments, e.g. ["./server"]`)
		}
		pr.Command = cmd
	}
	pr.Instances = p.intIn(k("instances"), o, pr.Instances, 0, 10000)
	pr.CPUs = p.intIn(k("cpus"), o, 0, 0, 4096)
	pr.MaxRestarts = p.intIn(k("max-restarts"), o, 0, 0, math.MaxInt32)
	if v, ok := o["shared"]; ok {
		if b, ok := v.(bool); ok {
			pr.Shared = b
		} else {
			p.errorf(k("shared"), "must be true or false, got %s", describe(v))
		}
	}
	if v, ok := o["restart"]; ok {
		if s, isStr := v.(string); !isStr {
			p.errorf(k("restart"), "must be always, on-failure or never, got %s", describe(v))
		} else if r, err := cluster.ParseRestartPolicy(s); err != nil {
			p.errorf(k("restart"), "%v", err)
		} else {
			pr.Restart = r
		}
	}
	if v, ok := o["env"]; ok {
		pr.Env = p.env(k("env"), v)
	}
	if v, ok := o["ports"]; ok {
		pr.Ports = p.ports(k("ports"), v)
	}
	if v, ok := o["listen"]; ok {
		pr.Listen = p.ports(k("listen"), v)
	}
	if v, ok := o["pre-stop"]; ok {
		if cmd, ok := p.strings(k("pre-stop"), v); ok {
			if len(cmd) == 0 || cmd[0] == "" {
				p.errorf(k("pre-stop"), `is empty: remove it or give a command, e.g. ["./drain.sh"]`)
			}
			pr.PreStop = cmd
		}
	}
	pr.StopTimeout = p.duration(k("stop-timeout"), o)
	pr.MaxAge = p.duration(k("max-age"), o)
	pr.MinUptime = p.duration(k("min-uptime"), o)
	pr.RestartWindow = p.duration(k("restart-window"), o)
	if v, ok := o["max-rss"]; ok {
		n, err := ParseSize(v)
		if err != nil {
			p.errorf(k("max-rss"), "%v", err)
		}
		pr.MaxRSS = n
	}
	if v, ok := o["memory"]; ok {
		n, err := ParseSize(v)
		if err != nil {
			p.errorf(k("memory"), "%v", err)
		} else if n < 4<<20 {
			p.errorf(k("memory"), "%d bytes is below the 4MiB minimum, e.g. memory = 512MiB", n)
		}
		pr.Memory = n
	}
	pr.MaxPids = p.intIn(k("max-pids"), o, 0, 1, 1<<22)
	if v, ok := o["health"]; ok {
		pr.Health = p.health(k("health"), v, pr.Ports)
	}
	if v, ok := o["reschedule"]; ok {
		pr.Reschedule = p.reschedule(k("reschedule"), v)
	}
	if v, ok := o["user"]; ok {
		s, _ := v.(string)
		if s == "" || strings.ContainsAny(s, " /\t\n") || strings.Count(s, ":") > 1 || strings.HasPrefix(s, ":") || strings.HasSuffix(s, ":") {
			p.errorf(k("user"), `bad value %s: want a user name, e.g. "app" or "app:app" (the worker must list it in gear.worker.allowed-users)`, describe(v))
		}
		pr.User = s
	}
	return pr
}

func (p *manifestParser) health(key string, v any, ports []int) *cluster.Health {
	o, ok := v.(map[string]any)
	if !ok {
		p.errorf(key, `must be an object, e.g. health { http = "/ecv", port = 8080, interval = 2s }`)
		return nil
	}
	p.unknownKeys(key, o, healthKeys)
	h := &cluster.Health{}
	kinds := 0
	if v, ok := o["http"]; ok {
		kinds++
		if s, ok := v.(string); ok && strings.HasPrefix(s, "/") {
			h.HTTP = s
		} else {
			p.errorf(key+".http", `must be an HTTP path starting with "/", e.g. "/ecv", got %s`, describe(v))
		}
	}
	if v, ok := o["tcp"]; ok {
		kinds++
		if b, ok := v.(bool); ok && b {
			h.TCP = true
		} else {
			p.errorf(key+".tcp", "must be true (a TCP connect to the port passes), got %s", describe(v))
		}
	}
	if v, ok := o["command"]; ok {
		kinds++
		if cmd, ok := p.strings(key+".command", v); ok {
			if len(cmd) == 0 || cmd[0] == "" {
				p.errorf(key+".command", `is empty: give the program and its arguments, e.g. ["./check"]`)
			}
			h.Command = cmd
		}
	}
	if kinds != 1 {
		p.errorf(key, `give exactly one check: http = "/ecv", tcp = true or command = ["./check"]`)
	}
	if v, ok := o["body"]; ok {
		if s, ok := v.(string); ok && h.HTTP != "" {
			h.Body = s
		} else {
			p.errorf(key+".body", "must be a string the HTTP response body must contain, and needs http = \"/path\"")
		}
	}
	if _, set := o["port"]; set {
		h.Port = p.intIn(key+".port", o, 0, 1, 65535)
	} else if len(ports) == 1 && len(h.Command) == 0 {
		h.Port = ports[0]
	} // else 0: the instance's own $PORT
	h.Interval = p.duration(key+".interval", o)
	h.Timeout = p.duration(key+".timeout", o)
	h.Grace = p.duration(key+".grace", o)
	h.Failures = p.intIn(key+".failures", o, 0, 1, 1000)
	return h
}

// reschedule reads a reschedule { } block; keys it leaves out take
// cluster.DefaultReschedule's values.
func (p *manifestParser) reschedule(key string, v any) *cluster.Reschedule {
	o, ok := v.(map[string]any)
	if !ok {
		p.errorf(key, `must be an object, e.g. reschedule { attempts = 3, interval = 1h, delay = 5s, delay-function = "exponential", max-delay = 1m }, got %s`, describe(v))
		return nil
	}
	p.unknownKeys(key, o, rescheduleKeys)
	r := cluster.DefaultReschedule
	r.Attempts = p.intIn(key+".attempts", o, r.Attempts, 0, 1000)
	for name, d := range map[string]*time.Duration{"interval": &r.Interval, "delay": &r.Delay, "max-delay": &r.MaxDelay} {
		if _, set := o[name]; set {
			*d = p.duration(key+"."+name, o)
		}
	}
	if v, set := o["delay-function"]; set {
		s, _ := v.(string)
		if s != cluster.DelayExponential && s != cluster.DelayConstant {
			p.errorf(key+".delay-function", `must be "exponential" or "constant", got %s`, describe(v))
		}
		r.DelayFunction = s
	}
	if r.MaxDelay > 0 && r.MaxDelay < r.Delay {
		if _, set := o["max-delay"]; set {
			p.errorf(key+".max-delay", "%v is shorter than delay %v: raise max-delay or lower delay", r.MaxDelay, r.Delay)
		} else {
			r.MaxDelay = r.Delay
		}
	}
	return &r
}

func (p *manifestParser) strings(key string, v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		p.errorf(key, `must be a list of strings, e.g. ["./server", "-port", "${PORT}"], got %s`, describe(v))
		return nil, false
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case int64, float64, bool:
			out = append(out, fmt.Sprint(e))
		default:
			p.errorf(key, "element %d must be a string, got %s", i, describe(e))
			return nil, false
		}
	}
	return out, true
}

func (p *manifestParser) intIn(key string, o map[string]any, def, lo, hi int) int {
	seg := key[strings.LastIndexByte(key, '.')+1:]
	v, ok := o[seg]
	if !ok {
		return def
	}
	n, isInt := v.(int64)
	if !isInt {
		if s, isStr := v.(string); isStr {
			if x, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				n, isInt = x, true
			}
		}
	}
	if !isInt {
		p.errorf(key, "must be a whole number, got %s", describe(v))
		return def
	}
	if n < int64(lo) || n > int64(hi) {
		if n < 0 && lo == 0 {
			p.errorf(key, "must not be negative, got %d", n)
		} else {
			p.errorf(key, "must be between %d and %d, got %d", lo, hi, n)
		}
		return def
	}
	return int(n)
}

func (p *manifestParser) duration(key string, o map[string]any) time.Duration {
	seg := key[strings.LastIndexByte(key, '.')+1:]
	v, ok := o[seg]
	if !ok {
		return 0
	}
	d, err := ParseDuration(v)
	if err != nil {
		p.errorf(key, "%v", err)
	}
	return d
}

func (p *manifestParser) env(key string, v any) map[string]string {
	o, ok := v.(map[string]any)
	if !ok {
		p.errorf(key, `must be an object, e.g. env { JAVA_OPTS = "-Xmx1g" }, got %s`, describe(v))
		return nil
	}
	out := make(map[string]string, len(o))
	for name, val := range o {
		k := key + "." + hocon.JoinKey(name)
		if !cluster.ValidEnvName(name) {
			p.errorf(k, "is not a valid environment variable name (letters, digits, _; not starting with a digit)")
			continue
		}
		switch val := val.(type) {
		case string:
			out[name] = val
		case int64, float64, bool:
			out[name] = fmt.Sprint(val)
		default:
			p.errorf(k, "must be a string, got %s (a dotted name like A.B makes an object; quote it)", describe(val))
		}
	}
	return out
}

func (p *manifestParser) ports(key string, v any) []int {
	list, ok := v.([]any)
	if !ok {
		p.errorf(key, "must be a list of port numbers, e.g. [8080], got %s", describe(v))
		return nil
	}
	var out []int
	for i, e := range list {
		n, ok := e.(int64)
		if !ok || n < 1 || n > 65535 {
			p.errorf(key, "element %d: %s is not a port (1-65535)", i, describe(e))
			continue
		}
		if slices.Contains(out, int(n)) {
			p.errorf(key, "port %d is listed twice", n)
			continue
		}
		out = append(out, int(n))
	}
	return out
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case bool:
		return fmt.Sprintf("%t (a boolean)", v)
	default:
		return fmt.Sprint(v)
	}
}

var durationUnits = []struct {
	names []string
	d     time.Duration
}{
	{[]string{"ns", "nano", "nanos", "nanosecond", "nanoseconds"}, time.Nanosecond},
	{[]string{"us", "micro", "micros", "microsecond", "microseconds"}, time.Microsecond},
	{[]string{"ms", "milli", "millis", "millisecond", "milliseconds"}, time.Millisecond},
	{[]string{"s", "second", "seconds"}, time.Second},
	{[]string{"m", "minute", "minutes"}, time.Minute},
	{[]string{"h", "hour", "hours"}, time.Hour},
	{[]string{"d", "day", "days"}, 24 * time.Hour},
}

// ParseDuration reads a manifest duration: "10s", "500ms", "1m30s",
// "300 s", "2 minutes", or 0. A bare non-zero number is refused (HOCON would
// read it as milliseconds, which is rarely what a stop timeout means).
func ParseDuration(v any) (time.Duration, error) {
	var s string
	switch v := v.(type) {
	case int64:
		if v == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%d has no unit: write e.g. %ds or %dms", v, v, v)
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, fmt.Errorf("must be a duration like 10s, got %s", describe(v))
	}
	if s == "0" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("duration %q must not be negative", s)
		}
		return d, nil
	}
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyz ")
	unit := strings.TrimSpace(s[len(num):])
	for _, u := range durationUnits {
		if slices.Contains(u.names, unit) {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f < 0 || f*float64(u.d) > math.MaxInt64 {
				break
			}
			return time.Duration(f * float64(u.d)), nil
		}
	}
	return 0, fmt.Errorf("%q is not a duration: write e.g. 10s, 500ms, 2m or 1h", s)
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1, "byte": 1, "bytes": 1,
	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
}

// ParseSize reads a byte size: a number of bytes, or "512MB" (10^6),
// "512M"/"512MiB" (2^20), "2G", "1.5GiB" (HOCON's size units).
func ParseSize(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("size %d must not be negative", v)
		}
		return v, nil
	case string:
		s := strings.TrimSpace(v)
		num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
		unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
		mul, ok := sizeUnits[unit]
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if !ok || err != nil || f < 0 || f*float64(mul) > math.MaxInt64 {
			return 0, fmt.Errorf("%q is not a size: write e.g. 512MB, 1GiB or a number of bytes", s)
		}
		return int64(f * float64(mul)), nil
	default:
		return 0, fmt.Errorf("must be a size like 512MB, got %s", describe(v))
	}
}

// suggest returns the valid key closest to k, if it is close.
func suggest(k string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := hocon.EditDistance(strings.ToLower(k), v); d < bestD {
			best, bestD = v, d
		}
	}
	return best
}
