// Package config is gear's typed configuration: the Config struct every
// daemon and the CLI use, its defaults, and Load, which layers
//
//	built-in defaults → conf file (HOCON, package hocon) → GEAR_* environment → overrides (flags)
//
// with github.com/knadh/koanf/v2, decodes durations and sizes, and validates
// the result. Errors name where the bad value came from
// (conf/gear.conf:3:24, env GEAR_MASTERS, override) and say what would be
// valid; all of them are returned at once.
//
// Gearpump compatibility: every gearpump.X key is read as gear.X, and
// gearpump-master.akka.cluster.auto-down-unreachable-after as
// gear.failover.timeout, so a whole Gearpump gear.conf loads. Gearpump-only
// keys (Akka, Netty, serializers, ...) are counted in one Report.Info line.
// An unknown gear.* key is a warning with a "did you mean" suggestion.
//
// The package is not for runtime reconfiguration: a Config is loaded once
// at start and then passed down by value. It does no I/O besides reading
// the conf file and its includes, and it does not log: Load returns a
// Report the caller logs.
package config
