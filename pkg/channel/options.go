package channel

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables the gear worker hands executors (see docs/CHANNEL.md).
const (
	EnvRedis          = "GEAR_CHANNEL_REDIS"           // host:port, or redis:// / rediss:// URL
	EnvPassword       = "GEAR_CHANNEL_PASSWORD"        // AUTH password
	EnvDB             = "GEAR_CHANNEL_DB"              // database number (not with cluster)
	EnvTLS            = "GEAR_CHANNEL_TLS"             // true/false: TLS with system roots
	EnvSentinelMaster = "GEAR_CHANNEL_SENTINEL_MASTER" // sentinel master name
	EnvSentinelAddrs  = "GEAR_CHANNEL_SENTINEL_ADDRS"  // comma list of sentinels
	EnvClusterAddrs   = "GEAR_CHANNEL_CLUSTER_ADDRS"   // comma list of cluster seed nodes
	EnvPrefix         = "GEAR_CHANNEL_PREFIX"          // key prefix (optional)
	EnvExecutorID     = "GEAR_EXECUTOR_ID"             // default server id
)

// Defaults used when the Options field is zero.
const (
	DefaultPrefix    = "gear:channel:"
	DefaultMemberTTL = 30 * time.Second
	defaultAddr      = "127.0.0.1:6379"
)

// Options configure a Channel. Exactly one flavour is used: ClusterAddrs
// (Redis Cluster), else SentinelMaster+SentinelAddrs (failover through
// Sentinel), else Addr (a single server, default 127.0.0.1:6379).
type Options struct {
	Addr           string
	Password       string
	DB             int
	TLS            *tls.Config
	SentinelMaster string
	SentinelAddrs  []string
	ClusterAddrs   []string

	// Prefix starts every key (default "gear:channel:"). Applications
	// sharing one Redis use different prefixes. It must not contain '{'
	// or '}' (they would break the Redis Cluster hash tags).
	Prefix string
	// MemberTTL is the server lease: members of a server that has not
	// heartbeated for MemberTTL are removed (default 30s). Serve renews
	// the lease every MemberTTL/3.
	MemberTTL time.Duration
	// Logger receives connection state changes and sweeper results
	// (default: discard).
	Logger *slog.Logger

	// ServerID is this process's server id, used by Serve, Add, AddMany,
	// Leave and MembersOn when they are given an empty server. FromEnv sets
	// it from GEAR_EXECUTOR_ID.
	ServerID string
	// SweepInterval is how often Serve looks for dead servers (default
	// MemberTTL). Only one Serve in the whole deployment sweeps per
	// interval.
	SweepInterval time.Duration
	// InboxMaxLen caps each server inbox stream (XADD MAXLEN ~); 0, the
	// default, means no cap: a cap would drop undelivered pushes.
	InboxMaxLen int64
	// NewID makes push ids (default: 16 random bytes in hex). Tests may
	// inject a deterministic one; ids must be unique.
	NewID func() string
}

// FromEnv builds Options from the GEAR_CHANNEL_* variables and
// GEAR_EXECUTOR_ID. It fails when none of GEAR_CHANNEL_REDIS,
// GEAR_CHANNEL_SENTINEL_ADDRS, GEAR_CHANNEL_CLUSTER_ADDRS is set.
func FromEnv() (Options, error) {
	return fromEnv(os.LookupEnv)
}

func fromEnv(lookup func(string) (string, bool)) (Options, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	var o Options
	o.Password = get(EnvPassword)
	o.SentinelMaster = get(EnvSentinelMaster)
	o.SentinelAddrs = splitList(get(EnvSentinelAddrs))
	o.ClusterAddrs = splitList(get(EnvClusterAddrs))
	o.Prefix = get(EnvPrefix)
	o.ServerID = get(EnvExecutorID)
	if v := get(EnvDB); v != "" {
		db, err := strconv.Atoi(v)
		if err != nil || db < 0 {
			return Options{}, invalid("%s=%q: want a database number >= 0", EnvDB, v)
		}
		o.DB = db
	}
	if v := get(EnvTLS); v != "" {
		on, err := parseBool(v)
		if err != nil {
			return Options{}, invalid("%s=%q: want true or false", EnvTLS, v)
		}
		if on {
			o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if v := get(EnvRedis); v != "" {
		if strings.Contains(v, "://") {
			u, err := redis.ParseURL(v)
			if err != nil {
				return Options{}, invalid("%s: %v (want host:port or redis://[:password@]host:port[/db])", EnvRedis, err)
			}
			o.Addr = u.Addr
			if o.Password == "" {
				o.Password = u.Password
			}
			if get(EnvDB) == "" {
				o.DB = u.DB
			}
			if u.TLSConfig != nil && o.TLS == nil {
				o.TLS = u.TLSConfig
			}
		} else {
			o.Addr = v
		}
	}
	if o.Addr == "" && len(o.SentinelAddrs) == 0 && len(o.ClusterAddrs) == 0 {
		return Options{}, invalid("no Redis configured: set %s (host:port), %s with %s, or %s", EnvRedis, EnvSentinelAddrs, EnvSentinelMaster, EnvClusterAddrs)
	}
	return o, o.validate()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MemberTTL <= 0 {
		o.MemberTTL = DefaultMemberTTL
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = o.MemberTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
	if o.Addr == "" && len(o.ClusterAddrs) == 0 && len(o.SentinelAddrs) == 0 {
		o.Addr = defaultAddr
	}
	return o
}

func (o Options) validate() error {
	if strings.ContainsAny(o.Prefix, "{}") {
		return invalid("prefix %q contains '{' or '}' (reserved for Redis Cluster hash tags)", o.Prefix)
	}
	if o.MemberTTL < 0 {
		return invalid("MemberTTL %v is negative", o.MemberTTL)
	}
	if o.MemberTTL > 0 && o.MemberTTL < 10*time.Millisecond {
		return invalid("MemberTTL %v is below 10ms", o.MemberTTL)
	}
	if o.SentinelMaster != "" && len(o.SentinelAddrs) == 0 {
		return invalid("SentinelMaster %q given without SentinelAddrs (%s)", o.SentinelMaster, EnvSentinelAddrs)
	}
	if len(o.SentinelAddrs) > 0 && o.SentinelMaster == "" {
		return invalid("SentinelAddrs given without SentinelMaster (%s)", EnvSentinelMaster)
	}
	if len(o.ClusterAddrs) > 0 && o.DB != 0 {
		return invalid("DB %d with Redis Cluster (cluster has only database 0)", o.DB)
	}
	if len(o.ClusterAddrs) > 0 && o.SentinelMaster != "" {
		return invalid("both ClusterAddrs and SentinelMaster set: pick one")
	}
	addrs := append(append([]string{}, o.SentinelAddrs...), o.ClusterAddrs...)
	if o.Addr != "" {
		addrs = append(addrs, o.Addr)
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return invalid("Redis address %q is not host:port (e.g. 127.0.0.1:6379)", a)
		}
	}
	if o.ServerID != "" {
		if err := checkServer(o.ServerID); err != nil {
			return err
		}
	}
	return nil
}

// newClient picks the go-redis flavour and a description for errors.
func newClient(o Options) (redis.UniversalClient, string) {
	switch {
	case len(o.ClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
				Addrs:     o.ClusterAddrs,
				Password:  o.Password,
				TLSConfig: o.TLS,
			}),
			"cluster " + strings.Join(o.ClusterAddrs, ",")
	case o.SentinelMaster != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName:    o.SentinelMaster,
				SentinelAddrs: o.SentinelAddrs,
				Password:      o.Password,
				DB:            o.DB,
				TLSConfig:     o.TLS,
			}),
			fmt.Sprintf("master %q via sentinels %s", o.SentinelMaster, strings.Join(o.SentinelAddrs, ","))
	default:
		return redis.NewClient(&redis.Options{
			Addr:      o.Addr,
			Password:  o.Password,
			DB:        o.DB,
			TLSConfig: o.TLS,
		}), o.Addr
	}
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go >= 1.24)
	return hex.EncodeToString(b[:])
}
