package master

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
)

// MaxEntrySize is the largest raft log entry a master writes. raft-wal
// refuses to read back an entry over 64 MiB (it reports the log as corrupt
// and the commit index stops), and a large entry holds up every write
// behind it; so every command is encoded by encodeCommand, which refuses
// anything larger, and the lists that grow with the cluster (placements,
// lost executors, status reports) are split into batches that fit.
const MaxEntrySize = 1 << 20

// batchBudget is what the items of one batch may take: the entry limit
// less room for the command around them.
const batchBudget = MaxEntrySize - 64<<10

// ErrEntryTooLarge: a command does not fit in one raft entry. It wraps
// ErrBadRequest, so the API answers 400.
var ErrEntryTooLarge = fmt.Errorf("%w: request too large for one raft log entry", ErrBadRequest)

// encodeCommand is the one place commands become raft entries. It stamps
// the command format version (version.go) on every entry.
func encodeCommand(c command) ([]byte, error) {
	if c.V == 0 {
		c.V = commandVersion
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: the %s command encodes to %d bytes, over the limit of %d bytes (1 MiB) per entry; make the request smaller (names, command, args, env)",
			ErrEntryTooLarge, c.Op, len(b), MaxEntrySize)
	}
	return b, nil
}

// splitBySize splits items into consecutive batches whose JSON encodings
// add up to at most budget bytes each. An item larger than budget on its
// own is an error: it can never be written.
func splitBySize[T any](items []T, budget int) ([][]T, error) {
	var out [][]T
	start, size := 0, 0
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		n := len(b) + 1 // the comma between list items
		if n > budget {
			return nil, fmt.Errorf("%w: item %d of %d encodes to %d bytes, over the batch budget of %d bytes", ErrEntryTooLarge, i, len(items), n, budget)
		}
		if size+n > budget {
			out = append(out, items[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out, nil
}

// Limits bound what one request may ask of the cluster, so that what it
// asks can be placed and stored (see gear.limits.* in conf/gear.conf).
// They travel in the submit and scale commands, so every master enforces
// the leader's limits when it applies them, whatever its own gear.conf says.
type Limits struct {
	InstancesPerProcess int `json:"instances_per_process"` // gear.limits.instances-per-process
	ExecutorsPerApp     int `json:"executors_per_app"`     // gear.limits.executors-per-app
	Executors           int `json:"executors"`             // gear.limits.executors: desired, across live apps
	NameLength          int `json:"name_length"`           // gear.limits.name-length: app and process group names, bytes
}

// withDefaults fills unset limits from config.Default.
func (l Limits) withDefaults() Limits {
	d := config.Default().Limits
	if l.InstancesPerProcess <= 0 {
		l.InstancesPerProcess = d.InstancesPerProcess
	}
	if l.ExecutorsPerApp <= 0 {
		l.ExecutorsPerApp = d.ExecutorsPerApp
	}
	if l.Executors <= 0 {
		l.Executors = d.Executors
	}
	if l.NameLength <= 0 {
		l.NameLength = d.NameLength
	}
	return l
}

// checkName refuses an app or process group name over the length limit.
func (l Limits) checkName(what, name string) error {
	if len(name) > l.NameLength {
		return fmt.Errorf("%w: %s %q is %d bytes long: over gear.limits.name-length = %d (shorten it, or raise the limit in gear.conf)",
			ErrBadRequest, what, shorten(name), len(name), l.NameLength)
	}
	return nil
}

// checkApp checks an application's own size: its names, the instances of
// each group and its executors in all.
func (l Limits) checkApp(name string, procs []cluster.Process) error {
	if err := l.checkName("app name", name); err != nil {
		return err
	}
	total := 0
	for _, p := range procs {
		if err := l.checkName("process group name", p.Name); err != nil {
			return err
		}
		if p.Instances > l.InstancesPerProcess {
			return fmt.Errorf("%w: process group %q asks for %d instances: over gear.limits.instances-per-process = %d (raise it in gear.conf)",
				ErrBadRequest, shorten(p.Name), p.Instances, l.InstancesPerProcess)
		}
		total += max(p.Instances, 0)
	}
	if total > l.ExecutorsPerApp {
		return fmt.Errorf("%w: the app asks for %d executors in %d process groups: over gear.limits.executors-per-app = %d (raise it in gear.conf)",
			ErrBadRequest, total, len(procs), l.ExecutorsPerApp)
	}
	return nil
}

// checkCluster checks that the live applications other than except, plus
// n more executors, stay within the cluster-wide limit.
func (l Limits) checkCluster(s *State, except string, n int) error {
	total := n + s.liveDesired()
	if a := s.Apps[except]; a != nil && a.State != cluster.AppKilled {
		total -= desiredExecutors(a.Processes)
	}
	if total > l.Executors {
		return fmt.Errorf("%w: the cluster would have %d executors across its live apps: over gear.limits.executors = %d (kill apps you no longer need, or raise it in gear.conf)",
			ErrBadRequest, total, l.Executors)
	}
	return nil
}

// checkScale checks a scale of one process group of app to instances. A
// scale that does not grow the group always passes, so that a cluster over
// lowered limits can still shrink.
func (l Limits) checkScale(s *State, app *cluster.App, process string, instances int) error {
	for _, p := range app.Processes {
		if p.Name == process && instances <= p.Instances {
			return nil
		}
	}
	if instances > l.InstancesPerProcess {
		return fmt.Errorf("%w: scale to %d instances: over gear.limits.instances-per-process = %d (raise it in gear.conf)",
			ErrBadRequest, instances, l.InstancesPerProcess)
	}
	total := instances
	for _, p := range app.Processes {
		if p.Name != process {
			total += max(p.Instances, 0)
		}
	}
	if total > l.ExecutorsPerApp {
		return fmt.Errorf("%w: scale to %d instances: app %s would have %d executors: over gear.limits.executors-per-app = %d (raise it in gear.conf)",
			ErrBadRequest, instances, app.ID, total, l.ExecutorsPerApp)
	}
	return l.checkCluster(s, app.ID, total)
}

func desiredExecutors(procs []cluster.Process) int {
	n := 0
	for _, p := range procs {
		n += max(p.Instances, 0)
	}
	return n
}

// shorten cuts s for logs and error messages: a name is bounded by
// gear.limits.name-length, but a request over that limit must not put the
// whole of it in a log line.
func shorten(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}
