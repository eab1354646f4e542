package master

// The master does not trust the client's parse of a bundle: before a
// submit is accepted, it reads gear-app.conf (or, for a jar, the jar's
// classes) from the bundle as stored in its jar store, with the same code
// and limits as the CLI (bundle.InspectLimits, gear.bundle.*), and refuses
// a submit whose process groups are not the bundle's.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
)

// checkAgainstBundle inspects the stored bundle and compares it with the
// submit. What a submit may change is what the CLI's flags change:
// instances (-executors) and the arguments after "--" (req.Args, appended
// to every command as bundle.Inspect does; for a jar, also the main class,
// -main, which must exist in the jar). Every other field of every process
// group must be the bundle's, and the groups must be the same.
func (m *Master) checkAgainstBundle(ctx context.Context, req *cluster.SubmitRequest) error {
	var kind bundle.Kind
	switch req.Bundle.Kind {
	case cluster.KindJar:
		kind = bundle.KindJar
	case cluster.KindTarGz:
		kind = bundle.KindTarGz
	case cluster.KindZip:
		kind = bundle.KindZip
	default:
		return fmt.Errorf("%w: %v", ErrBadRequest, req.Bundle.Kind.Check())
	}
	mainClass := ""
	if kind == bundle.KindJar {
		// The jar's one process runs ["java", "-cp", BUNDLE, MAIN, args...].
		if len(req.Processes) == 1 && len(req.Processes[0].Command) > 3 {
			mainClass = req.Processes[0].Command[3]
		}
		if mainClass == "" {
			return fmt.Errorf("%w: bundle %s is a jar: the submit must have one process group \"main\" with command [\"java\", \"-cp\", %q, MAIN-CLASS, args...] (as `gear app submit` sends)",
				ErrBadRequest, req.Bundle.Digest, bundle.BundleVar)
		}
	}
	// A bundle is immutable (content addressed): its reading for the same
	// main class and arguments is remembered.
	key := inspectionKey(req.Bundle.Digest, req.Bundle.Kind, mainClass, req.Args)
	want, ok := m.inspected.get(key)
	if !ok && kind == bundle.KindTarGz && len(req.Args) > 0 {
		// Read while it was uploaded (inspectWhileReceived), without
		// arguments: they are appended to every command.
		if base, found := m.inspected.get(inspectionKey(req.Bundle.Digest, req.Bundle.Kind, "", nil)); found {
			want, ok = withArgs(base, req.Args), true
		}
	}
	if !ok {
		start := time.Now()
		path, cleanup, err := m.bundleCopy(ctx, req.Bundle.Digest, kind)
		if err != nil {
			return err
		}
		man, _, err := bundle.InspectLimits(path, mainClass, req.Args, m.opts.BundleLimits)
		cleanup()
		if err != nil {
			// The stored bundle is the one the submit names, so the file
			// name in the message is only our temporary copy: name the
			// bundle.
			msg := strings.ReplaceAll(err.Error(), path, req.Bundle.Name+" ("+req.Bundle.Digest+")")
			return fmt.Errorf("%w: the master's inspection of the stored bundle: %s", ErrBadRequest, msg)
		}
		want = manifestProcesses(man)
		m.inspected.put(key, want)
		if m.log != nil { // (tests build a Master without one)
			m.log.Debug("stored bundle inspected", "bundle", req.Bundle.Digest, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	return compareProcesses(req.Processes, want)
}

// inspectionKey names a bundle's reading for a main class and arguments.
func inspectionKey(digest string, kind cluster.BundleKind, mainClass string, args []string) string {
	return strings.Join(append([]string{digest, string(kind), mainClass}, args...), "\x00")
}

// withArgs is a copy of procs with args appended to every command, as
// bundle.Inspect does.
func withArgs(procs []cluster.Process, args []string) []cluster.Process {
	out := make([]cluster.Process, len(procs))
	for i, p := range procs {
		p.Command = append(slices.Clip(p.Command), args...)
		out[i] = p
	}
	return out
}

// inspectWhileReceived returns a follower for jarstore.PutSizedFollow that
// checks a .tar.gz bundle as it is received (bundle.InspectTarGz, the
// master's limits), and a func to call once the upload is stored, which
// remembers the bundle's process groups for its submit: the first submit
// of a large bundle then does not read it all again after the upload. A
// bundle the check refuses is remembered as nothing: its submit inspects
// the stored bundle and says what is wrong. It returns nil, nil for other
// kinds.
func (m *Master) inspectWhileReceived(name string, kind bundle.Kind) (follow func(io.Reader), stored func(digest string)) {
	if kind != bundle.KindTarGz {
		return nil, nil
	}
	var man *bundle.Manifest
	var took time.Duration
	follow = func(r io.Reader) {
		start := time.Now()
		defer func() {
			// Outside the HTTP handler's goroutine, a panic on a
			// hostile archive would take the master down: the submit's
			// own inspection (in the handler) decides instead.
			if p := recover(); p != nil {
				man = nil
				m.log.Error("bundle check while received panicked; its submit will inspect it", "name", name, "panic", p)
			}
		}()
		var err error
		if man, err = bundle.InspectTarGz(r, name, nil, m.opts.BundleLimits); err != nil {
			man = nil
			m.log.Debug("bundle check while received failed; its submit will inspect it", "name", name, "err", err)
		}
		took = time.Since(start)
	}
	stored = func(digest string) {
		if man == nil {
			return
		}
		m.inspected.put(inspectionKey(digest, cluster.KindTarGz, "", nil), manifestProcesses(man))
		m.log.Debug("bundle inspected while received", "name", name, "bundle", digest, "took", took.Round(time.Millisecond))
	}
	return follow, stored
}

// inspections remembers the process groups read from stored bundles.
// Bounded: it forgets everything when full (submits of new bundles are
// rare next to the cost of reading one).
type inspections struct {
	mu    sync.Mutex
	byKey map[string][]cluster.Process
}

const maxInspections = 256

func (c *inspections) get(key string) ([]cluster.Process, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.byKey[key]
	return p, ok
}

func (c *inspections) put(key string, p []cluster.Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || len(c.byKey) >= maxInspections {
		c.byKey = map[string][]cluster.Process{}
	}
	c.byKey[key] = p
}

// manifestProcesses is the API's form of the bundle's process groups, as
// `gear app submit` sends them.
func manifestProcesses(man *bundle.Manifest) []cluster.Process {
	out := make([]cluster.Process, 0, len(man.Processes))
	for _, p := range man.Processes {
		out = append(out, cluster.Process{
			Name: p.Name, Command: p.Command, Instances: p.Instances, CPUs: p.CPUs, Shared: p.Shared,
			Restart: p.Restart, Env: p.Env, Ports: p.Ports, StopTimeout: p.StopTimeout, PreStop: p.PreStop,
			MaxAge: p.MaxAge, MaxRSS: p.MaxRSS, MinUptime: p.MinUptime, MaxRestarts: p.MaxRestarts,
			RestartWindow: p.RestartWindow, User: p.User, Listen: p.Listen, Health: p.Health, Reschedule: p.Reschedule,
			Memory: p.Memory, MaxPids: p.MaxPids,
		})
	}
	return out
}

// compareProcesses says how the submitted groups differ from the bundle's
// (instances aside), naming the group and the field.
func compareProcesses(got, want []cluster.Process) error {
	byName := func(ps []cluster.Process) map[string]cluster.Process {
		out := map[string]cluster.Process{}
		for _, p := range ps {
			out[p.Name] = p
		}
		return out
	}
	g, w := byName(got), byName(want)
	var missing, extra []string
	for n := range w {
		if _, ok := g[n]; !ok {
			missing = append(missing, n)
		}
	}
	for n := range g {
		if _, ok := w[n]; !ok {
			extra = append(extra, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		return fmt.Errorf("%w: the submit's process groups do not match the bundle's gear-app.conf: missing %q, not in the bundle %q (submit the bundle with `gear app submit`, which reads them from it)",
			ErrBadRequest, missing, extra)
	}
	names := make([]string, 0, len(w))
	for n := range w {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a, b := g[n], w[n]
		a.Instances = b.Instances // -executors may change it
		if reflect.DeepEqual(normalize(a), normalize(b)) {
			continue
		}
		ja, _ := json.Marshal(normalize(a))
		jb, _ := json.Marshal(normalize(b))
		var ma, mb map[string]any
		_ = json.Unmarshal(ja, &ma)
		_ = json.Unmarshal(jb, &mb)
		keys := []string{}
		for k := range ma {
			keys = append(keys, k)
		}
		for k := range mb {
			if _, ok := ma[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !reflect.DeepEqual(ma[k], mb[k]) {
				return fmt.Errorf("%w: process group %q: %s is %s in the submit but %s in the bundle's gear-app.conf (only instances and the arguments after -- may differ; submit with `gear app submit`)",
					ErrBadRequest, n, k, show(ma[k]), show(mb[k]))
			}
		}
		return fmt.Errorf("%w: process group %q differs from the bundle's gear-app.conf", ErrBadRequest, n)
	}
	return nil
}

// normalize makes empty and nil collections equal.
func normalize(p cluster.Process) cluster.Process {
	if len(p.Env) == 0 {
		p.Env = nil
	}
	if len(p.Ports) == 0 {
		p.Ports = nil
	}
	if len(p.Listen) == 0 {
		p.Listen = nil
	}
	if len(p.PreStop) == 0 {
		p.PreStop = nil
	}
	if len(p.Command) == 0 {
		p.Command = nil
	}
	return p
}

func show(v any) string {
	if v == nil {
		return "unset"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// bundleCopy gives InspectLimits the stored bundle as a file named as its
// kind wants (InspectLimits tells the kind by name): a link to the blob's
// file in a directory store, else a copy, streamed, with the digest
// verified while it is read. A copy goes to the
// system's temp dir ($TMPDIR), never the data dir, whose free space the
// raft log needs.
func (m *Master) bundleCopy(ctx context.Context, digest string, kind bundle.Kind) (string, func(), error) {
	ext := map[bundle.Kind]string{bundle.KindJar: ".jar", bundle.KindTarGz: ".tar.gz", bundle.KindZip: ".zip"}[kind]
	if src, ok := m.blobs.FilePath(ctx, digest); ok {
		// A file:// or local store: inspect the stored file in place
		// (through a link named for its kind) instead of copying it and
		// hashing it again; it was hashed when it was stored, and the
		// workers verify what they run.
		dir, err := os.MkdirTemp("", "gear-inspect-*")
		if err != nil {
			return "", nil, fmt.Errorf("inspect bundle %s: %w", digest, err)
		}
		link := filepath.Join(dir, "bundle"+ext)
		if err := os.Symlink(src, link); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("inspect bundle %s: %w", digest, err)
		}
		return link, func() { os.RemoveAll(dir) }, nil
	}
	rc, _, err := m.blobs.Open(ctx, digest)
	if err != nil {
		return "", nil, fmt.Errorf("%w: bundle %s is not in the jar store (upload it first with `gear app submit`): %v", ErrBadRequest, digest, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "gear-inspect-*"+ext)
	if err != nil {
		return "", nil, fmt.Errorf("inspect bundle %s: %w", digest, err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		cleanup()
		return "", nil, fmt.Errorf("inspect bundle %s: read it from the jar store: %w", digest, err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return f.Name(), cleanup, nil
}
