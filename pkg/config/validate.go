package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gear-run/gear/pkg/cluster"
)

type checkError struct {
	key  string
	elem int
	msg  string
}

// Validate checks every setting and returns all problems joined, each as
// a *FieldError naming the key (without a file position: Load adds those).
func (c *Config) Validate() error {
	var errs []error
	for _, e := range c.check() {
		errs = append(errs, &FieldError{Key: e.key, Msg: e.msg})
	}
	return errors.Join(errs...)
}

// ParseHostPort splits "host:port" and checks both halves; the error says
// what is wrong and shows the expected form.
func ParseHostPort(s string) (host string, port int, err error) {
	if strings.TrimSpace(s) == "" {
		return "", 0, fmt.Errorf(`empty address (want host:port, e.g. "node1:3000")`)
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && strings.Contains(ae.Err, "missing port") {
			return "", 0, fmt.Errorf(`%q has no port (want host:port, e.g. "%s:3000")`, s, hostForExample(s))
		}
		return "", 0, fmt.Errorf(`%q is not host:port (want e.g. "node1:3000", IPv6 as "[::1]:3000")`, s)
	}
	if host == "" {
		return "", 0, fmt.Errorf(`%q has no host (want host:port, e.g. "node1%s")`, s, s)
	}
	if strings.ContainsFunc(host, unicode.IsSpace) || strings.Contains(host, "/") {
		return "", 0, fmt.Errorf(`%q has an invalid host %q (want host:port, e.g. "node1:3000")`, s, host)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf(`%q has an invalid port %q (want a number from 1 to 65535)`, s, ps)
	}
	return host, port, nil
}

func hostForExample(s string) string {
	if strings.Contains(s, ":") { // bare IPv6
		return "[" + strings.Trim(s, "[]") + "]"
	}
	return s
}

var (
	onExitModes = []string{"stop", "leave"}
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
)

// restartPolicies lists cluster.RestartPolicies, the one definition.
func restartPolicies() []string {
	out := make([]string, len(cluster.RestartPolicies))
	for i, r := range cluster.RestartPolicies {
		out[i] = string(r)
	}
	return out
}

// checkUserName checks the form of a user name (whether it exists is for
// the worker to find out, on its own machine): "name" or "name:group".
func checkUserName(u string) string {
	for _, part := range strings.SplitN(u, ":", 2) {
		if part == "" || strings.ContainsFunc(part, func(r rune) bool {
			return !(r == '_' || r == '-' || r == '.' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r))
		}) {
			return fmt.Sprintf("%q is not a user name (want e.g. \"gear\" or \"gear:gear\" for user:group)", u)
		}
	}
	return ""
}

func oneOf(v string, valid []string) bool {
	for _, s := range valid {
		if v == s {
			return true
		}
	}
	return false
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

func (c *Config) check() []checkError {
	var out []checkError
	add := func(key string, elem int, format string, args ...any) {
		out = append(out, checkError{key: key, elem: elem, msg: fmt.Sprintf(format, args...)})
	}
	enum := func(key, v string, valid []string) {
		if !oneOf(v, valid) {
			add(key, -1, "%q is not valid (want one of %s)", v, quoteAll(valid))
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add(key, -1, "%s must be greater than 0", FormatDuration(d))
		}
	}

	switch h := c.Hostname; {
	case h == "":
		add("gear.hostname", -1, `is empty (want this node's host name or IP, e.g. "node1")`)
	case strings.ContainsFunc(h, unicode.IsSpace) || strings.Contains(h, "/"):
		add("gear.hostname", -1, "%q is not a host name or IP", h)
	case strings.Contains(h, ":") && net.ParseIP(strings.Trim(h, "[]")) == nil:
		add("gear.hostname", -1, "%q must be a host name or IP without a port (the port comes from -port or gear.cluster.masters)", h)
	}

	seen := map[string]int{}
	for i, m := range c.Masters {
		if _, _, err := ParseHostPort(m); err != nil {
			add("gear.cluster.masters", i, "%v", err)
			continue
		}
		if j, dup := seen[m]; dup {
			add("gear.cluster.masters", i, "%q is listed twice (elements %d and %d)", m, j, i)
		}
		seen[m] = i
	}

	if c.FailoverTimeout < time.Second {
		add("gear.failover.timeout", -1, "%s is too short (want at least 1s; the default 6s rides out a 1 s pause of the leader)", FormatDuration(c.FailoverTimeout))
	}

	if k := c.Gossip.Key; k != "" {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			add("gear.gossip.key", -1, "is not base64 (generate one with: head -c 32 /dev/urandom | base64)")
		} else if n := len(b); n != 16 && n != 24 && n != 32 {
			add("gear.gossip.key", -1, "decodes to %d bytes, want 16, 24 or 32 (AES-128/192/256; generate one with: head -c 32 /dev/urandom | base64)", n)
		}
	}
	if len(c.Gossip.ClusterLabel) > 255 {
		add("gear.gossip.cluster-label", -1, "is %d bytes long, at most 255 allowed", len(c.Gossip.ClusterLabel))
	}

	switch t := c.TLS; {
	case t.Cert != "" && t.Key == "":
		add("gear.tls.key", -1, "is not set while gear.tls.cert is (set both: the node's certificate and its private key, PEM files)")
	case t.Key != "" && t.Cert == "":
		add("gear.tls.cert", -1, "is not set while gear.tls.key is (set both: the node's certificate and its private key, PEM files)")
	case t.Cert != "" && t.CA == "":
		add("gear.tls.ca", -1, "is not set: mutual TLS needs the CA that signed every node's certificate (a PEM file)")
	}

	if msg := checkRootPath(c.JarStore.RootPath); msg != "" {
		add("gear.jarstore.rootpath", -1, "%s", msg)
	}
	if c.JarStore.MaxBundleSize <= 0 {
		add("gear.jarstore.max-bundle-size", -1, "must be greater than 0 (e.g. 4GB)")
	}
	if c.JarStore.GCGrace < 0 {
		add("gear.jarstore.gc-grace", -1, "%s must not be negative", FormatDuration(c.JarStore.GCGrace))
	}

	if n := c.Raft.SegmentSize; n < MinRaftSegmentSize || n > MaxRaftSegmentSize {
		add("gear.raft.segment-size", -1, "%s is out of range (want %s to %s, e.g. 8MiB; a master needs this much free space in its data dir for the next log segment)",
			FormatSize(n), FormatSize(MinRaftSegmentSize), FormatSize(MaxRaftSegmentSize))
	}

	cpus := map[int]bool{}
	for i, n := range c.Worker.CPUs {
		if n < 0 {
			add("gear.worker.cpus", i, "CPU %d is negative (want CPU numbers as in /proc/cpuinfo, e.g. [0, 1, \"4-7\"])", n)
		} else if cpus[n] {
			add("gear.worker.cpus", i, "CPU %d is listed twice", n)
		}
		cpus[n] = true
	}
	positive("gear.worker.heartbeat-interval", c.Worker.HeartbeatInterval)
	if hb := c.Worker.HeartbeatInterval; hb > 0 && c.FailoverTimeout >= time.Second && hb*2 > c.FailoverTimeout {
		add("gear.worker.heartbeat-interval", -1, "%s is more than half of gear.failover.timeout (%s): one late heartbeat would look like a dead worker", FormatDuration(hb), FormatDuration(c.FailoverTimeout))
	}
	switch sad := c.Worker.StopAfterDisconnect; {
	case sad == Never || sad == 0:
	case sad < 0:
		add("gear.worker.stop-after-disconnect", -1, "%s is negative (want a duration below gear.failover.timeout, 0 for 0.75 x the timeout, or off)", FormatDuration(sad))
	case sad >= c.FailoverTimeout:
		add("gear.worker.stop-after-disconnect", -1, "%s is not below gear.failover.timeout (%s): the masters would reschedule executors while this worker still runs them (use a shorter value, 0 for 0.75 x the timeout, or off to accept duplicates)", FormatDuration(sad), FormatDuration(c.FailoverTimeout))
	}
	enum("gear.worker.on-exit", c.Worker.OnExit, onExitModes)
	if fa := c.Worker.ForgetAfter; fa != Never && fa < c.FailoverTimeout {
		add("gear.worker.forget-after", -1, "%s is below gear.failover.timeout (%s): a worker would be forgotten before it counts as lost (want e.g. 24h, or off to keep dead workers until `gear workers remove`)", FormatDuration(fa), FormatDuration(c.FailoverTimeout))
	}
	if len(c.Worker.AdminSocket) > maxSocketPath {
		add("gear.worker.admin-socket", -1, "path is %d bytes long, unix sockets allow at most %d", len(c.Worker.AdminSocket), maxSocketPath)
	}

	e := &c.Executor
	enum("gear.executor.restart", e.Restart, restartPolicies())
	positive("gear.executor.backoff-min", e.BackoffMin)
	if e.BackoffMax < e.BackoffMin {
		add("gear.executor.backoff-max", -1, "%s is less than gear.executor.backoff-min (%s)", FormatDuration(e.BackoffMax), FormatDuration(e.BackoffMin))
	}
	if e.MinUptime < 0 {
		add("gear.executor.min-uptime", -1, "%s must not be negative", FormatDuration(e.MinUptime))
	}
	positive("gear.executor.restart-window", e.RestartWindow)
	positive("gear.executor.stop-timeout", e.StopTimeout)
	if e.MaxRestarts < 0 {
		add("gear.executor.max-restarts", -1, "%d must not be negative (0 = fail on the first crash)", e.MaxRestarts)
	}
	if e.LogMaxSize < 4096 {
		add("gear.executor.log-max-size", -1, "%d bytes is too small (want at least 4KiB, e.g. 10MB)", e.LogMaxSize)
	}
	if e.LogMaxFiles < 1 {
		add("gear.executor.log-max-files", -1, "%d must be at least 1", e.LogMaxFiles)
	}

	for _, l := range []struct {
		key string
		v   int
	}{
		{"gear.limits.instances-per-process", c.Limits.InstancesPerProcess},
		{"gear.limits.executors-per-app", c.Limits.ExecutorsPerApp},
		{"gear.limits.executors", c.Limits.Executors},
		{"gear.limits.name-length", c.Limits.NameLength},
	} {
		if l.v < 1 {
			add(l.key, -1, "%d must be at least 1", l.v)
		}
	}

	ch := &c.Channel
	if ch.Redis != "" {
		if msg := checkRedisAddr(ch.Redis); msg != "" {
			add("gear.channel.redis", -1, "%s", msg)
		}
	}
	if ch.DB < 0 {
		add("gear.channel.db", -1, "%d must not be negative", ch.DB)
	}
	for i, a := range ch.SentinelAddrs {
		if _, _, err := ParseHostPort(a); err != nil {
			add("gear.channel.sentinel-addrs", i, "%v", err)
		}
	}
	for i, a := range ch.ClusterAddrs {
		if _, _, err := ParseHostPort(a); err != nil {
			add("gear.channel.cluster-addrs", i, "%v", err)
		}
	}
	switch {
	case ch.SentinelMaster != "" && len(ch.SentinelAddrs) == 0:
		add("gear.channel.sentinel-addrs", -1, "is empty but gear.channel.sentinel-master is %q (list the sentinels, e.g. [\"s1:26379\"])", ch.SentinelMaster)
	case ch.SentinelMaster == "" && len(ch.SentinelAddrs) > 0:
		add("gear.channel.sentinel-master", -1, "is empty but gear.channel.sentinel-addrs is set (name the monitored master, e.g. \"mymaster\")")
	}
	modes := 0
	for _, on := range []bool{ch.Redis != "", ch.SentinelMaster != "" || len(ch.SentinelAddrs) > 0, len(ch.ClusterAddrs) > 0} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		add("gear.channel.redis", -1, "set only one of gear.channel.redis, gear.channel.sentinel-* and gear.channel.cluster-addrs")
	}
	if ch.MemberTTL < time.Second {
		add("gear.channel.member-ttl", -1, "%s is too short (want at least 1s)", FormatDuration(ch.MemberTTL))
	}

	enum("gear.log.level", c.Log.Level, logLevels)
	enum("gear.log.format", c.Log.Format, logFormats)
	if c.Log.MaxSize < 1<<20 {
		add("gear.log.max-size", -1, "%d bytes is too small (want at least 1MiB, e.g. 100MiB)", c.Log.MaxSize)
	}
	if c.Log.MaxBackups < 0 {
		add("gear.log.max-backups", -1, "%d must not be negative (0 = keep every rotated file)", c.Log.MaxBackups)
	}
	if c.Log.MaxAge < 0 {
		add("gear.log.max-age", -1, "%s must not be negative (0 = keep rotated files whatever their age)", FormatDuration(c.Log.MaxAge))
	}
	if c.Log.File == "" && !c.Log.Stderr {
		add("gear.log.stderr", -1, "is false but gear.log.file is empty: the daemon would log nowhere (set gear.log.file, or stderr = true)")
	}
	for i, u := range append([]string{c.Worker.User}, c.Worker.AllowedUsers...) {
		if u == "" && i == 0 {
			continue
		}
		if msg := checkUserName(u); msg != "" {
			if i == 0 {
				add("gear.worker.user", -1, "%s", msg)
			} else {
				add("gear.worker.allowed-users", i-1, "%s", msg)
			}
		}
	}

	// Bundle unpack limits and the worker's bundle cache.
	if c.Bundle.MaxExpansion < 2 {
		add("gear.bundle.max-expansion", -1, "%d is too small (want a ratio of unpacked to archive size of at least 2, e.g. 100; real bundles compress up to about 10:1)", c.Bundle.MaxExpansion)
	}
	if c.Bundle.MaxUnpackedSize < 1<<20 {
		add("gear.bundle.max-unpacked-size", -1, "%d bytes is too small (want at least 1MiB, e.g. 4GiB)", c.Bundle.MaxUnpackedSize)
	}
	if c.Worker.CacheSize < 0 {
		add("gear.worker.cache-size", -1, "%d must not be negative (0 = keep no unused bundle, e.g. 10GiB)", c.Worker.CacheSize)
	}
	if c.Worker.CacheGrace < 0 {
		add("gear.worker.cache-grace", -1, "%s must not be negative", FormatDuration(c.Worker.CacheGrace))
	}
	return out
}

// IsPlainPath reports whether a gear.jarstore.rootpath is a directory on
// each master (no scheme), as Gearpump reads "jarstore/" and "/jarstore/":
// a relative one is relative to the directory the master was started in.
func IsPlainPath(rootPath string) bool {
	if rootPath == "" {
		return false
	}
	if strings.HasPrefix(rootPath, "/") || strings.HasPrefix(rootPath, ".") {
		return true
	}
	i := strings.Index(rootPath, ":")
	if i < 0 {
		return true
	}
	// "scheme:..." only when what precedes the colon is a URL scheme
	// (letters, digits, + - .) and no '/' comes before it.
	for j, r := range rootPath[:i] {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || j > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')
		if !ok {
			return true
		}
	}
	return i == 0
}

func checkRootPath(s string) string {
	const want = "want hdfs://host:port/path/, hdfs://nameservice/path/ (HDFS HA), file:///nfs/dir, a directory on each master (jarstore/ or /dir), or unset for the master's local data dir"
	if s == "" {
		return ""
	}
	if IsPlainPath(s) {
		// Gearpump's meaning: a directory on each master, relative to
		// where the master was started unless absolute (Load resolves it).
		if strings.ContainsRune(s, 0) {
			return fmt.Sprintf("%q holds a NUL byte (want a directory, e.g. jarstore/ or /var/lib/gear/jars)", s)
		}
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return fmt.Sprintf("%q is not a path or URL (%s)", s, want)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return fmt.Sprintf("%q names host %q: file:// takes a path mounted on every master, e.g. file:///mnt/nfs/gear (three slashes)", s, u.Host)
		}
		if u.Path == "" {
			return fmt.Sprintf("%q has no path (want e.g. file:///mnt/nfs/gear)", s)
		}
	case "hdfs":
		if u.Host == "" {
			return fmt.Sprintf("%q has no namenode or nameservice (%s)", s, want)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Sprintf("%q has an invalid port %q", s, p)
			}
		}
	default:
		return fmt.Sprintf("scheme %q is not supported (%s)", u.Scheme, want)
	}
	return ""
}

func checkRedisAddr(s string) string {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Sprintf("%q is not a URL: %v", s, err)
		}
		switch u.Scheme {
		case "redis", "rediss", "unix":
			return ""
		}
		return fmt.Sprintf("scheme %q is not supported (want host:port, redis://, rediss:// or unix://)", u.Scheme)
	}
	if _, _, err := ParseHostPort(s); err != nil {
		return err.Error()
	}
	return ""
}
