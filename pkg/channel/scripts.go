package channel

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The scripts touch only keys of one server (hash tag {srv:ID}), so they run
// on Redis Cluster too. They are the only multi-step writes; everything else
// is single commands whose order is argued in channel.go.

// pushScript: KEYS alive, member set, server's channel index, inbox;
// ARGV channel, push id, data, maxlen (0 = none).
// Returns -1 when the server's lease expired (its members of this channel are
// dropped), else the number of members the entry lists (0 = none, no entry).
var pushScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  return -1
end
local m = redis.call('SMEMBERS', KEYS[2])
if #m == 0 then return 0 end
local maxlen = tonumber(ARGV[4])
if maxlen > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'id', ARGV[2], 'channel', ARGV[1], 'members', cjson.encode(m), 'data', ARGV[3])
else
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'channel', ARGV[1], 'members', cjson.encode(m), 'data', ARGV[3])
end
return #m
`)

// readScript: KEYS alive, member set, server's channel index; ARGV channel.
// Returns nil when the server's lease expired (its members of this channel
// are dropped), else the members.
var readScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  return false
end
return redis.call('SMEMBERS', KEYS[2])
`)

// leaveScript: KEYS member set, server's channel index; ARGV channel,
// members... Returns how many members the server still has in the channel.
var leaveScript = redis.NewScript(`
redis.call('SREM', KEYS[1], unpack(ARGV, 2))
local n = redis.call('SCARD', KEYS[1])
if n == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return n
`)

// sweepScript: KEYS alive, server's channel index, inbox; ARGV member set key
// prefix ("<prefix>{srv:ID}:ch:"). Returns nil when the server is alive, else
// drops all its member sets and its inbox and returns its channels.
var sweepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local chans = redis.call('SMEMBERS', KEYS[2])
for _, c in ipairs(chans) do redis.call('DEL', ARGV[1] .. c) end
redis.call('DEL', KEYS[2], KEYS[3])
return chans
`)

type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// runScripts pipelines EVALSHA for every call and falls back to EVAL for
// the ones that met NOSCRIPT (after a Redis restart or failover). Results are
// in call order; each carries its own error.
func runScripts(ctx context.Context, c redis.UniversalClient, calls []scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	pipe := c.Pipeline()
	for i, sc := range calls {
		cmds[i] = sc.script.EvalSha(ctx, pipe, sc.keys, sc.args...)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	var retry []int
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return cmds
	}
	pipe = c.Pipeline()
	for _, i := range retry {
		cmds[i] = calls[i].script.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
	}
	_, _ = pipe.Exec(ctx)
	return cmds
}
