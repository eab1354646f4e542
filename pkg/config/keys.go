package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/hocon"
)

type valueKind int

const (
	kindString valueKind = iota
	kindStrings
	kindInt
	kindBool
	kindDuration
	kindDurationOff // duration, or off/never/false = Never
	kindSize
	kindInts
)

func (k valueKind) String() string {
	return [...]string{"a string", "a list of strings", "an integer", "true or false", "a duration", "a duration or off", "a size", "a list of CPU numbers"}[k]
}

// key describes one gear.* setting.
type key struct {
	name   string
	kind   valueKind
	secret bool
	ptr    func(c *Config) any // pointer to the field
}

var keyTable = []key{
	{name: "gear.hostname", kind: kindString, ptr: func(c *Config) any { return &c.Hostname }},
	{name: "gear.cluster.masters", kind: kindStrings, ptr: func(c *Config) any { return &c.Masters }},
	{name: "gear.datadir", kind: kindString, ptr: func(c *Config) any { return &c.DataDir }},
	{name: "gear.auth.token", kind: kindString, secret: true, ptr: func(c *Config) any { return &c.Token }},
	{name: "gear.failover.timeout", kind: kindDuration, ptr: func(c *Config) any { return &c.FailoverTimeout }},
	{name: "gear.gossip.key", kind: kindString, secret: true, ptr: func(c *Config) any { return &c.Gossip.Key }},
	{name: "gear.gossip.cluster-label", kind: kindString, ptr: func(c *Config) any { return &c.Gossip.ClusterLabel }},
	{name: "gear.tls.cert", kind: kindString, ptr: func(c *Config) any { return &c.TLS.Cert }},
	{name: "gear.tls.key", kind: kindString, ptr: func(c *Config) any { return &c.TLS.Key }},
	{name: "gear.tls.ca", kind: kindString, ptr: func(c *Config) any { return &c.TLS.CA }},
	{name: "gear.jarstore.rootpath", kind: kindString, ptr: func(c *Config) any { return &c.JarStore.RootPath }},
	{name: "gear.jarstore.max-bundle-size", kind: kindSize, ptr: func(c *Config) any { return &c.JarStore.MaxBundleSize }},
	{name: "gear.jarstore.gc-grace", kind: kindDuration, ptr: func(c *Config) any { return &c.JarStore.GCGrace }},
	{name: "gear.raft.segment-size", kind: kindSize, ptr: func(c *Config) any { return &c.Raft.SegmentSize }},
	{name: "gear.worker.cpus", kind: kindInts, ptr: func(c *Config) any { return &c.Worker.CPUs }},
	{name: "gear.worker.heartbeat-interval", kind: kindDuration, ptr: func(c *Config) any { return &c.Worker.HeartbeatInterval }},
	{name: "gear.worker.stop-after-disconnect", kind: kindDurationOff, ptr: func(c *Config) any { return &c.Worker.StopAfterDisconnect }},
	{name: "gear.worker.on-exit", kind: kindString, ptr: func(c *Config) any { return &c.Worker.OnExit }},
	{name: "gear.worker.admin-socket", kind: kindString, ptr: func(c *Config) any { return &c.Worker.AdminSocket }},
	{name: "gear.worker.forget-after", kind: kindDurationOff, ptr: func(c *Config) any { return &c.Worker.ForgetAfter }},
	{name: "gear.executor.restart", kind: kindString, ptr: func(c *Config) any { return &c.Executor.Restart }},
	{name: "gear.executor.backoff-min", kind: kindDuration, ptr: func(c *Config) any { return &c.Executor.BackoffMin }},
	{name: "gear.executor.backoff-max", kind: kindDuration, ptr: func(c *Config) any { return &c.Executor.BackoffMax }},
	{name: "gear.executor.min-uptime", kind: kindDuration, ptr: func(c *Config) any { return &c.Executor.MinUptime }},
	{name: "gear.executor.restart-window", kind: kindDuration, ptr: func(c *Config) any { return &c.Executor.RestartWindow }},
	{name: "gear.executor.stop-timeout", kind: kindDuration, ptr: func(c *Config) any { return &c.Executor.StopTimeout }},
	{name: "gear.executor.max-restarts", kind: kindInt, ptr: func(c *Config) any { return &c.Executor.MaxRestarts }},
	{name: "gear.executor.log-max-size", kind: kindSize, ptr: func(c *Config) any { return &c.Executor.LogMaxSize }},
	{name: "gear.executor.log-max-files", kind: kindInt, ptr: func(c *Config) any { return &c.Executor.LogMaxFiles }},
	{name: "gear.limits.instances-per-process", kind: kindInt, ptr: func(c *Config) any { return &c.Limits.InstancesPerProcess }},
	{name: "gear.limits.executors-per-app", kind: kindInt, ptr: func(c *Config) any { return &c.Limits.ExecutorsPerApp }},
	{name: "gear.limits.executors", kind: kindInt, ptr: func(c *Config) any { return &c.Limits.Executors }},
	{name: "gear.limits.name-length", kind: kindInt, ptr: func(c *Config) any { return &c.Limits.NameLength }},
	{name: "gear.channel.redis", kind: kindString, ptr: func(c *Config) any { return &c.Channel.Redis }},
	{name: "gear.channel.password", kind: kindString, secret: true, ptr: func(c *Config) any { return &c.Channel.Password }},
	{name: "gear.channel.db", kind: kindInt, ptr: func(c *Config) any { return &c.Channel.DB }},
	{name: "gear.channel.tls", kind: kindBool, ptr: func(c *Config) any { return &c.Channel.TLS }},
	{name: "gear.channel.sentinel-master", kind: kindString, ptr: func(c *Config) any { return &c.Channel.SentinelMaster }},
	{name: "gear.channel.sentinel-addrs", kind: kindStrings, ptr: func(c *Config) any { return &c.Channel.SentinelAddrs }},
	{name: "gear.channel.cluster-addrs", kind: kindStrings, ptr: func(c *Config) any { return &c.Channel.ClusterAddrs }},
	{name: "gear.channel.member-ttl", kind: kindDuration, ptr: func(c *Config) any { return &c.Channel.MemberTTL }},
	{name: "gear.log.level", kind: kindString, ptr: func(c *Config) any { return &c.Log.Level }},
	{name: "gear.log.format", kind: kindString, ptr: func(c *Config) any { return &c.Log.Format }},
	{name: "gear.log.file", kind: kindString, ptr: func(c *Config) any { return &c.Log.File }},
	{name: "gear.log.stderr", kind: kindBool, ptr: func(c *Config) any { return &c.Log.Stderr }},
	{name: "gear.log.max-size", kind: kindSize, ptr: func(c *Config) any { return &c.Log.MaxSize }},
	{name: "gear.log.max-backups", kind: kindInt, ptr: func(c *Config) any { return &c.Log.MaxBackups }},
	{name: "gear.log.max-age", kind: kindDuration, ptr: func(c *Config) any { return &c.Log.MaxAge }},
	{name: "gear.metrics.open", kind: kindBool, ptr: func(c *Config) any { return &c.Metrics.Open }},
	{name: "gear.worker.user", kind: kindString, ptr: func(c *Config) any { return &c.Worker.User }},
	{name: "gear.worker.allowed-users", kind: kindStrings, ptr: func(c *Config) any { return &c.Worker.AllowedUsers }},
	// Bundle unpack limits and the worker's bundle cache.
	{name: "gear.bundle.max-expansion", kind: kindInt, ptr: func(c *Config) any { return &c.Bundle.MaxExpansion }},
	{name: "gear.bundle.max-unpacked-size", kind: kindSize, ptr: func(c *Config) any { return &c.Bundle.MaxUnpackedSize }},
	{name: "gear.worker.cache-size", kind: kindSize, ptr: func(c *Config) any { return &c.Worker.CacheSize }},
	{name: "gear.worker.cache-grace", kind: kindDuration, ptr: func(c *Config) any { return &c.Worker.CacheGrace }},
}

var keyIndex = func() map[string]*key {
	m := make(map[string]*key, len(keyTable))
	for i := range keyTable {
		m[keyTable[i].name] = &keyTable[i]
	}
	return m
}()

// EnvName is the environment variable for a gear.* key:
// gear.worker.stop-after-disconnect -> GEAR_WORKER_STOP_AFTER_DISCONNECT.
func EnvName(key string) string {
	return "GEAR_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(strings.TrimPrefix(key, "gear.")))
}

// envShort are the short environment names kept for convenience. The full
// name (GEAR_CLUSTER_MASTERS) wins when both are set.
var envShort = map[string]string{
	"GEAR_MASTERS": "gear.cluster.masters",
	"GEAR_TOKEN":   "gear.auth.token",
	"GEAR_CA":      "gear.tls.ca",
}

// EnvConf names the conf file; it is not a key.
const EnvConf = "GEAR_CONF"

var envIndex = func() map[string]string {
	m := map[string]string{}
	for _, k := range keyTable {
		m[EnvName(k.name)] = k.name
	}
	return m
}()

// fileForm renders the field of k in c as it would be written in gear.conf.
func (k *key) fileForm(c *Config) any {
	switch p := k.ptr(c).(type) {
	case *string:
		return *p
	case *[]string:
		out := make([]any, len(*p))
		for i, s := range *p {
			out[i] = s
		}
		return out
	case *int:
		return int64(*p)
	case *bool:
		return *p
	case *int64:
		return FormatSize(*p)
	case *[]int:
		out := make([]any, len(*p))
		for i, n := range *p {
			out[i] = int64(n)
		}
		return out
	case *time.Duration:
		if *p == Never && k.kind == kindDurationOff {
			return "off"
		}
		return FormatDuration(*p)
	}
	panic("config: unhandled field type for " + k.name)
}

// display is the JSON form: like fileForm, but sizes in bytes and lists
// as typed slices.
func (k *key) display(c *Config) any {
	switch p := k.ptr(c).(type) {
	case *int64:
		return *p
	case *[]string:
		return append([]string{}, *p...)
	case *[]int:
		return append([]int{}, *p...)
	}
	return k.fileForm(c)
}

// decodeError is a decode failure; elem >= 0 points into a list.
type decodeError struct {
	elem int
	msg  string
}

func derr(elem int, format string, args ...any) *decodeError {
	return &decodeError{elem: elem, msg: fmt.Sprintf(format, args...)}
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any, []string, []int:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a number"
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	case time.Duration:
		return FormatDuration(x), true
	}
	return "", false
}

// listOf turns a list value, or a comma-separated string (from env and
// flags), or a HOCON list in a string ("[a, b]"), into elements.
func listOf(v any) ([]any, *decodeError) {
	switch x := v.(type) {
	case nil:
		return []any{}, nil
	case []any:
		return x, nil
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, nil
	case []int:
		out := make([]any, len(x))
		for i, n := range x {
			out[i] = int64(n)
		}
		return out, nil
	case string:
		s := strings.TrimSpace(x)
		if strings.HasPrefix(s, "[") {
			d, err := hocon.ParseWith([]byte("v = "+s), "", hocon.Options{LookupEnv: func(string) (string, bool) { return "", false }, ReadFile: noFiles})
			if err != nil {
				return nil, derr(-1, "%q is not a list: %v", x, err)
			}
			l, _ := d.Get("v")
			if out, ok := l.([]any); ok {
				return out, nil
			}
		}
		out := []any{}
		for part := range strings.SplitSeq(s, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	}
	return nil, derr(-1, "want a list, found %s", typeName(v))
}

func noFiles(p string) ([]byte, error) { return nil, fmt.Errorf("include %s: not allowed here", p) }

// decode sets the field of k in c from v.
func (k *key) decode(c *Config, v any) *decodeError {
	switch p := k.ptr(c).(type) {
	case *string:
		s, ok := scalarString(v)
		if !ok && v != nil {
			return derr(-1, "want %s, found %s", k.kind, typeName(v))
		}
		*p = s
	case *[]string:
		items, e := listOf(v)
		if e != nil {
			return e
		}
		out := make([]string, 0, len(items))
		for i, it := range items {
			s, ok := scalarString(it)
			if !ok {
				return derr(i, "element %d: want a string, found %s", i, typeName(it))
			}
			out = append(out, s)
		}
		*p = out
	case *int:
		n, e := decodeInt(v)
		if e != nil {
			return e
		}
		*p = n
	case *bool:
		b, e := decodeBool(v)
		if e != nil {
			return e
		}
		*p = b
	case *int64:
		var n int64
		switch x := v.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<62 {
				return derr(-1, "%v is not a whole number of bytes", x)
			}
			n = int64(x)
		case string:
			var err error
			if n, err = ParseSize(x); err != nil {
				return derr(-1, "%v", err)
			}
		default:
			return derr(-1, "want %s (e.g. 512MB), found %s", k.kind, typeName(v))
		}
		*p = n
	case *time.Duration:
		if k.kind == kindDurationOff {
			if s, ok := v.(string); ok {
				switch strings.ToLower(strings.TrimSpace(s)) {
				case "off", "never", "false", "no":
					*p = Never
					return nil
				}
			}
			if b, ok := v.(bool); ok && !b {
				*p = Never
				return nil
			}
		}
		d, e := decodeDuration(v)
		if e != nil {
			if k.kind == kindDurationOff {
				e.msg += `, or off`
			}
			return e
		}
		*p = d
	case *[]int:
		items, e := listOf(v)
		if e != nil {
			return e
		}
		out := []int{}
		for i, it := range items {
			if s, ok := it.(string); ok && strings.Contains(strings.TrimPrefix(s, "-"), "-") {
				lo, hi, ok := strings.Cut(s, "-")
				a, err1 := strconv.Atoi(strings.TrimSpace(lo))
				b, err2 := strconv.Atoi(strings.TrimSpace(hi))
				if !ok || err1 != nil || err2 != nil || a > b || b-a > 1<<16 {
					return derr(i, "element %d: %q is not a CPU range (want e.g. \"0-3\")", i, s)
				}
				for n := a; n <= b; n++ {
					out = append(out, n)
				}
				continue
			}
			n, e := decodeInt(it)
			if e != nil {
				return derr(i, "element %d: %s", i, e.msg)
			}
			out = append(out, n)
		}
		*p = out
	default:
		panic("config: unhandled field type for " + k.name)
	}
	return nil
}

func decodeInt(v any) (int, *decodeError) {
	switch x := v.(type) {
	case int64:
		if x > math.MaxInt32 || x < math.MinInt32 {
			return 0, derr(-1, "%d is out of range", x)
		}
		return int(x), nil
	case int:
		return x, nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > math.MaxInt32 {
			return 0, derr(-1, "want an integer, found %v", x)
		}
		return int(x), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil || n > math.MaxInt32 || n < math.MinInt32 {
			return 0, derr(-1, "want an integer, found %q", x)
		}
		return n, nil
	}
	return 0, derr(-1, "want an integer, found %s", typeName(v))
}

func decodeBool(v any) (bool, *decodeError) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "on", "yes":
			return true, nil
		case "false", "off", "no":
			return false, nil
		}
		return false, derr(-1, "want true or false (or on/off, yes/no), found %q", x)
	}
	return false, derr(-1, "want true or false (or on/off, yes/no), found %s", typeName(v))
}

func decodeDuration(v any) (time.Duration, *decodeError) {
	switch x := v.(type) {
	case int64: // bare number: milliseconds
		if x > math.MaxInt64/int64(time.Millisecond) || x < math.MinInt64/int64(time.Millisecond) {
			return 0, derr(-1, "%d ms is too large", x)
		}
		return time.Duration(x) * time.Millisecond, nil
	case int:
		return time.Duration(x) * time.Millisecond, nil
	case float64:
		if math.Abs(x) > float64(math.MaxInt64/int64(time.Millisecond)) {
			return 0, derr(-1, "%v ms is too large", x)
		}
		return time.Duration(x * float64(time.Millisecond)), nil
	case time.Duration:
		return x, nil
	case string:
		d, err := ParseDuration(x)
		if err != nil {
			return 0, derr(-1, "%v", err)
		}
		return d, nil
	}
	return 0, derr(-1, "want a duration (e.g. 10s, 500ms), found %s", typeName(v))
}
