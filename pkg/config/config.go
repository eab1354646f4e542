package config

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// Config is gear's configuration. JSON() renders it with the gear.* key
// names; the json tags give the same names nested, for json.Marshal.
type Config struct {
	Hostname        string        `json:"hostname"`         // gear.hostname
	Masters         []string      `json:"masters"`          // gear.cluster.masters
	DataDir         string        `json:"datadir"`          // gear.datadir
	Token           string        `json:"token"`            // gear.auth.token
	FailoverTimeout time.Duration `json:"failover-timeout"` // gear.failover.timeout

	Gossip struct {
		Key          string `json:"key"`           // gear.gossip.key
		ClusterLabel string `json:"cluster-label"` // gear.gossip.cluster-label
	} `json:"gossip"`

	TLS struct {
		Cert string `json:"cert"` // gear.tls.cert
		Key  string `json:"key"`  // gear.tls.key
		CA   string `json:"ca"`   // gear.tls.ca
	} `json:"tls"`

	JarStore struct {
		RootPath      string        `json:"rootpath"`        // gear.jarstore.rootpath
		MaxBundleSize int64         `json:"max-bundle-size"` // gear.jarstore.max-bundle-size
		GCGrace       time.Duration `json:"gc-grace"`        // gear.jarstore.gc-grace
	} `json:"jarstore"`

	Raft struct {
		SegmentSize int64 `json:"segment-size"` // gear.raft.segment-size
	} `json:"raft"`

	Worker struct {
		CPUs                []int         `json:"cpus"`                  // gear.worker.cpus
		HeartbeatInterval   time.Duration `json:"heartbeat-interval"`    // gear.worker.heartbeat-interval
		StopAfterDisconnect time.Duration `json:"stop-after-disconnect"` // gear.worker.stop-after-disconnect; 0 = 0.75 x failover timeout, -1 = never
		OnExit              string        `json:"on-exit"`               // gear.worker.on-exit
		AdminSocket         string        `json:"admin-socket"`          // gear.worker.admin-socket
		CacheSize           int64         `json:"cache-size"`            // gear.worker.cache-size
		CacheGrace          time.Duration `json:"cache-grace"`           // gear.worker.cache-grace
		ForgetAfter         time.Duration `json:"forget-after"`          // gear.worker.forget-after; Never = keep forever
		User                string        `json:"user"`                  // gear.worker.user; "" = the worker's own user
		AllowedUsers        []string      `json:"allowed-users"`         // gear.worker.allowed-users: what a process's user = "..." may name
	} `json:"worker"`

	Executor struct {
		Restart       string        `json:"restart"`        // gear.executor.restart
		BackoffMin    time.Duration `json:"backoff-min"`    // gear.executor.backoff-min
		BackoffMax    time.Duration `json:"backoff-max"`    // gear.executor.backoff-max
		MinUptime     time.Duration `json:"min-uptime"`     // gear.executor.min-uptime
		RestartWindow time.Duration `json:"restart-window"` // gear.executor.restart-window
		StopTimeout   time.Duration `json:"stop-timeout"`   // gear.executor.stop-timeout
		MaxRestarts   int           `json:"max-restarts"`   // gear.executor.max-restarts
		LogMaxSize    int64         `json:"log-max-size"`   // gear.executor.log-max-size
		LogMaxFiles   int           `json:"log-max-files"`  // gear.executor.log-max-files
	} `json:"executor"`

	Limits struct {
		InstancesPerProcess int `json:"instances-per-process"` // gear.limits.instances-per-process
		ExecutorsPerApp     int `json:"executors-per-app"`     // gear.limits.executors-per-app
		Executors           int `json:"executors"`             // gear.limits.executors
		NameLength          int `json:"name-length"`           // gear.limits.name-length
	} `json:"limits"`

	Channel struct {
		Redis          string        `json:"redis"`           // gear.channel.redis
		Password       string        `json:"password"`        // gear.channel.password
		DB             int           `json:"db"`              // gear.channel.db
		TLS            bool          `json:"tls"`             // gear.channel.tls
		SentinelMaster string        `json:"sentinel-master"` // gear.channel.sentinel-master
		SentinelAddrs  []string      `json:"sentinel-addrs"`  // gear.channel.sentinel-addrs
		ClusterAddrs   []string      `json:"cluster-addrs"`   // gear.channel.cluster-addrs
		MemberTTL      time.Duration `json:"member-ttl"`      // gear.channel.member-ttl
	} `json:"channel"`

	Log struct {
		Level  string `json:"level"`  // gear.log.level
		Format string `json:"format"` // gear.log.format
		// File, when set, receives the daemon's log, rotated by
		// MaxSize/MaxBackups/MaxAge (lumberjack); Stderr keeps stderr too.
		File       string        `json:"file"`        // gear.log.file
		Stderr     bool          `json:"stderr"`      // gear.log.stderr
		MaxSize    int64         `json:"max-size"`    // gear.log.max-size
		MaxBackups int           `json:"max-backups"` // gear.log.max-backups; 0 = keep all
		MaxAge     time.Duration `json:"max-age"`     // gear.log.max-age; 0 = keep regardless of age
	} `json:"log"`

	Metrics struct {
		// Open serves /metrics without the cluster token.
		Open bool `json:"open"` // gear.metrics.open
	} `json:"metrics"`

	// Bundle bounds unpacking (CLI inspection before upload, worker unpack).
	Bundle struct {
		MaxExpansion    int   `json:"max-expansion"`     // gear.bundle.max-expansion
		MaxUnpackedSize int64 `json:"max-unpacked-size"` // gear.bundle.max-unpacked-size
	} `json:"bundle"`
}

// Never is the StopAfterDisconnect value for "off": a disconnected worker
// keeps its executors running.
const Never time.Duration = -1

// DefaultMasterPort is a master's port when neither -port nor this host's
// entry in gear.cluster.masters gives one.
const DefaultMasterPort = 3000

// Default returns the built-in defaults (what conf/gear.conf documents).
// It is the one place a default lives: the daemons fall back to these
// values for options left zero.
func Default() Config {
	var c Config
	c.Hostname = "127.0.0.1"
	c.Masters = []string{net.JoinHostPort(c.Hostname, strconv.Itoa(DefaultMasterPort))}
	c.FailoverTimeout = 6 * time.Second
	c.Gossip.ClusterLabel = "gear"
	c.JarStore.MaxBundleSize = 4e9 // 4GB
	c.JarStore.GCGrace = time.Hour
	c.Raft.SegmentSize = 8 << 20 // 8MiB
	c.Worker.CPUs = []int{}
	c.Worker.HeartbeatInterval = 250 * time.Millisecond
	c.Worker.OnExit = "stop"
	c.Worker.ForgetAfter = 24 * time.Hour
	c.Executor.Restart = "always"
	c.Executor.BackoffMin = 100 * time.Millisecond
	c.Executor.BackoffMax = 5 * time.Second
	c.Executor.MinUptime = time.Second
	c.Executor.RestartWindow = 60 * time.Second
	c.Executor.StopTimeout = 10 * time.Second
	c.Executor.MaxRestarts = 10
	c.Executor.LogMaxSize = 10e6 // 10MB
	c.Executor.LogMaxFiles = 3
	c.Limits.InstancesPerProcess = 10000
	c.Limits.ExecutorsPerApp = 10000
	c.Limits.Executors = 100000
	c.Limits.NameLength = 200
	c.Channel.SentinelAddrs = []string{}
	c.Channel.ClusterAddrs = []string{}
	c.Channel.MemberTTL = 30 * time.Second
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.Log.Stderr = true
	c.Log.MaxSize = 100 << 20 // 100MiB
	c.Log.MaxBackups = 5
	c.Log.MaxAge = 0
	c.Worker.AllowedUsers = []string{}
	// Bundle unpack limits and the worker's bundle cache.
	c.Bundle.MaxExpansion = 100
	c.Bundle.MaxUnpackedSize = 4 << 30 // 4GiB
	c.Worker.CacheSize = 10 << 30      // 10GiB
	c.Worker.CacheGrace = 30 * time.Second
	return c
}

// EffectiveStopAfterDisconnect is how long a worker that cannot reach any
// master keeps its executors: the configured value, 0.75 x the failover
// timeout when it is 0 (so the worker stops them before the masters
// reschedule them elsewhere), or Never (-1).
func (c Config) EffectiveStopAfterDisconnect() time.Duration {
	if c.Worker.StopAfterDisconnect == 0 {
		return c.FailoverTimeout * 3 / 4
	}
	return c.Worker.StopAfterDisconnect
}

// Redacted is shown instead of secrets by JSON.
const Redacted = "(redacted)"

// JSON renders the configuration as one flat, indented JSON object keyed by
// gear.* names, sorted; durations as strings ("6s", "off"), sizes in bytes.
// Secrets (gear.auth.token, gear.gossip.key, gear.channel.password) show as
// "(redacted)" when set.
func (c *Config) JSON() ([]byte, error) {
	m := make(map[string]any, len(keyTable))
	for _, k := range keyTable {
		v := k.display(c)
		if k.secret && v != "" {
			v = Redacted
		}
		m[k.name] = v
	}
	return json.MarshalIndent(m, "", "  ")
}

// Keys returns every gear.* key Config knows, sorted.
func Keys() []string {
	out := make([]string, len(keyTable))
	for i, k := range keyTable {
		out[i] = k.name
	}
	slices.Sort(out)
	return out
}

// Value returns the value of key in c in conf-file form (durations and
// sizes as strings such as "6s" and "4GB"), for docs and `gear config get`.
func (c *Config) Value(key string) (any, error) {
	k, ok := keyIndex[key]
	if !ok {
		return nil, fmt.Errorf("unknown key %s%s", key, suggestion(key))
	}
	return k.fileForm(c), nil
}

// Bounds of gear.raft.segment-size. raft-wal preallocates each log segment
// in full and addresses it with 32-bit offsets.
const (
	MinRaftSegmentSize int64 = 64 << 10 // 64KiB
	MaxRaftSegmentSize int64 = 1 << 30  // 1GiB
)
