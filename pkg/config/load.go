package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"

	"github.com/gear-run/gear/pkg/hocon"
)

// LoadOptions says where configuration comes from. Later layers win:
// defaults, File, Env, Overrides.
type LoadOptions struct {
	// File is the conf file; "" means $GEAR_CONF from Env, and if that is
	// unset too, no file (defaults, environment and overrides only).
	File string
	// Env is the environment in os.Environ() form; nil means none. GEAR_*
	// names map to keys (GEAR_WORKER_STOP_AFTER_DISCONNECT), plus
	// GEAR_MASTERS and GEAR_TOKEN; the whole list also answers ${VAR}
	// substitutions in the file.
	Env []string
	// Overrides are dotted gear.* keys (gearpump.* aliases accepted), e.g.
	// from the daemons' -ip/-port/-datadir flags. Values may be strings
	// ("10s", "a:1,b:2") or typed (time.Duration, []string, int).
	Overrides map[string]any
	// Dir resolves a relative gear.jarstore.rootpath (Gearpump's
	// "jarstore/": relative to where the master was started); "" = the
	// process's working directory.
	Dir string
}

// Report tells the caller what to log after a Load.
type Report struct {
	Warnings []string // unknown gear.* keys, misspelt GEAR_* variables, ...
	Info     []string // one line summarising ignored Gearpump-only keys
	Sources  []string // the conf file and every file it included
	// Origin says where each key not left at its default was set last:
	// "conf/gear.conf:3:24", "env GEAR_MASTERS" or "override".
	Origin map[string]string
}

// FieldError is one invalid setting.
type FieldError struct {
	Pos   hocon.Pos // set when the value came from a file
	Where string    // "conf/gear.conf:3:24", "env GEAR_MASTERS", "override" or ""
	Key   string    // the key as written (gearpump.cluster.masters for an alias)
	Msg   string
}

// Error returns "where: key: msg", with anything unprintable escaped and
// the key cut to 40 characters (see hocon.Token).
func (e *FieldError) Error() string {
	if e.Where == "" {
		return hocon.Token(e.Key) + ": " + hocon.Escape(e.Msg)
	}
	return hocon.Escape(e.Where) + ": " + hocon.Token(e.Key) + ": " + hocon.Escape(e.Msg)
}

// source records which layer set a key last.
type source struct {
	where   string
	key     string
	pos     hocon.Pos
	doc     *hocon.Document
	fileKey string
}

// failoverAlias is Gearpump's failover knob.
const failoverAlias = "gearpump-master.akka.cluster.auto-down-unreachable-after"

// gearpumpNamespaces are the top-level sections of a Gearpump gear.conf
// that gear ignores (besides the gearpump.* keys it maps).
func isGearpumpNamespace(top string) bool {
	switch top {
	case "gearpump", "base", "akka", "linux", "windows", "master", "worker", "ui":
		return true
	}
	return strings.HasPrefix(top, "gearpump-")
}

// canonical maps a key as written to the gear.* key it sets, if any.
func canonical(k string) (string, bool) {
	switch {
	case k == failoverAlias:
		return "gear.failover.timeout", true
	case strings.HasPrefix(k, "gearpump."):
		g := "gear." + strings.TrimPrefix(k, "gearpump.")
		_, ok := keyIndex[g]
		return g, ok
	}
	_, ok := keyIndex[k]
	return k, ok
}

// Load builds the configuration from opts and validates it. On error the
// Config is nil and the error joins every problem found (file syntax errors
// first, as a hocon.ErrorList; otherwise one *FieldError per bad setting).
// The Report is always non-nil.
func Load(opts LoadOptions) (*Config, *Report, error) {
	return load(opts, nil)
}

// load is Load with the file reader injectable (nil = the file system).
func load(opts LoadOptions, readFile func(string) ([]byte, error)) (*Config, *Report, error) {
	rep := &Report{}
	env := envMap(opts.Env)
	file := opts.File
	if file == "" {
		file = env[EnvConf]
	}
	k := koanf.New(".")
	src := map[string]source{}
	if err := k.Load(confmap.Provider(defaultsMap(), "."), nil); err != nil {
		return nil, rep, fmt.Errorf("load defaults: %w", err)
	}
	var errs []error
	if file != "" {
		doc, err := hocon.ParseFileWith(file, hocon.Options{LookupEnv: func(n string) (string, bool) { v, ok := env[n]; return v, ok }, ReadFile: readFile})
		if err != nil {
			return nil, rep, err
		}
		rep.Sources = doc.Files()
		layer := fileLayer(doc, src, rep)
		if err := k.Load(confmap.Provider(layer, "."), nil); err != nil {
			return nil, rep, fmt.Errorf("load %s: %w", file, err)
		}
	}
	if err := k.Load(confmap.Provider(envLayer(env, src, rep), "."), nil); err != nil {
		return nil, rep, fmt.Errorf("load environment: %w", err)
	}
	over := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(opts.Overrides)) {
		g, ok := canonical(name)
		if !ok {
			errs = append(errs, &FieldError{Where: "override", Key: name, Msg: "unknown key" + suggestion(name)})
			continue
		}
		over[g] = opts.Overrides[name]
		src[g] = source{where: "override", key: g}
	}
	if err := k.Load(confmap.Provider(over, "."), nil); err != nil {
		return nil, rep, fmt.Errorf("load overrides: %w", err)
	}

	rep.Origin = make(map[string]string, len(src))
	for key, s := range src {
		rep.Origin[key] = s.where
	}
	cfg := Default()
	failed := map[string]bool{}
	for i := range keyTable {
		kk := &keyTable[i]
		if e := kk.decode(&cfg, k.Get(kk.name)); e != nil {
			failed[kk.name] = true
			errs = append(errs, fieldError(src, kk.name, e.elem, e.msg))
		}
	}
	for _, fe := range cfg.check() {
		if !failed[fe.key] {
			errs = append(errs, fieldError(src, fe.key, fe.elem, fe.msg))
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int {
			var fa, fb *FieldError
			errors.As(a, &fa)
			errors.As(b, &fb)
			if fa == nil || fb == nil || !fa.Pos.IsValid() || !fb.Pos.IsValid() {
				return cmp.Compare(boolInt(fb != nil && fb.Pos.IsValid()), boolInt(fa != nil && fa.Pos.IsValid()))
			}
			return cmp.Or(cmp.Compare(fa.Pos.File, fb.Pos.File), cmp.Compare(fa.Pos.Line, fb.Pos.Line), cmp.Compare(fa.Pos.Col, fb.Pos.Col))
		})
		return nil, rep, errors.Join(errs...)
	}
	if err := resolveRootPath(&cfg, opts.Dir); err != nil {
		return nil, rep, err
	}
	if len(cfg.Masters) == 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: %s is empty: a master started with this configuration forms a group of one at its -ip:-port, and commands and workers need -master; list the masters, e.g. [\"node1:3000\", \"node2:3000\", \"node3:3000\"]",
			cmp.Or(src["gear.cluster.masters"].where, "configuration"), cmp.Or(src["gear.cluster.masters"].key, "gear.cluster.masters")))
	}
	return &cfg, rep, nil
}

// resolveRootPath makes a relative gear.jarstore.rootpath absolute against
// dir (the working directory when ""), so that `config show` and the master
// name the directory actually used.
func resolveRootPath(cfg *Config, dir string) error {
	p := cfg.JarStore.RootPath
	if !IsPlainPath(p) || filepath.IsAbs(p) {
		return nil
	}
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("gear.jarstore.rootpath %q is relative to the working directory, which cannot be read: %w (give an absolute path)", p, err)
		}
		dir = wd
	}
	cfg.JarStore.RootPath = filepath.Join(dir, p)
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func fieldError(src map[string]source, key string, elem int, msg string) *FieldError {
	s, ok := src[key]
	if !ok {
		return &FieldError{Key: key, Msg: msg} // a default: a bug in Default()
	}
	fe := &FieldError{Pos: s.pos, Where: s.where, Key: s.key, Msg: msg}
	if s.doc != nil && elem >= 0 {
		if p, ok := s.doc.ElemPos(s.fileKey, elem); ok {
			fe.Pos, fe.Where = p, p.String()
		}
	}
	return fe
}

// defaultsMap is Default() in conf-file form, keyed by dotted key.
func defaultsMap() map[string]any {
	c := Default()
	m := make(map[string]any, len(keyTable))
	for i := range keyTable {
		m[keyTable[i].name] = keyTable[i].fileForm(&c)
	}
	return m
}

// fileLayer maps the document's keys to gear.* keys. When a gear.* key
// and a Gearpump alias of it are both set, the one assigned later in the
// file wins (so a Gearpump line appended to the shipped file takes effect).
func fileLayer(doc *hocon.Document, src map[string]source, rep *Report) map[string]any {
	layer := map[string]any{}
	ignored := map[string]int{}
	nIgnored := 0
	chosen := map[string]string{} // gear key -> file key that sets it
	type warning struct {
		pos hocon.Pos
		msg string
	}
	var warns []warning
	defer func() {
		slices.SortStableFunc(warns, func(a, b warning) int {
			return cmp.Or(cmp.Compare(a.pos.File, b.pos.File), cmp.Compare(a.pos.Line, b.pos.Line), cmp.Compare(a.pos.Col, b.pos.Col))
		})
		for _, w := range warns {
			rep.Warnings = append(rep.Warnings, w.msg)
		}
	}()
	for _, fk := range doc.Keys() {
		segs := hocon.SplitKey(fk)
		top := ""
		if len(segs) > 0 {
			top = segs[0]
		}
		g, known := canonical(fk)
		switch {
		case known:
			if prev, ok := chosen[g]; ok {
				po, _ := doc.Order(prev)
				fo, _ := doc.Order(fk)
				if po > fo {
					continue
				}
			}
			chosen[g] = fk
		case top != "gear" && isGearpumpNamespace(top):
			ignored[top]++
			nIgnored++
		default:
			p, _ := doc.Pos(fk)
			warns = append(warns, warning{p, fmt.Sprintf("%s: %s: unknown key, ignored%s", hocon.Escape(p.String()), hocon.Token(fk), suggestion(fk))})
		}
	}
	for g, fk := range chosen {
		v, _ := doc.Get(fk)
		p, _ := doc.Pos(fk)
		layer[g] = v
		src[g] = source{where: p.String(), key: fk, pos: p, doc: doc, fileKey: fk}
	}
	if nIgnored > 0 {
		var parts []string
		for _, top := range slices.Sorted(maps.Keys(ignored)) {
			parts = append(parts, fmt.Sprintf("%s.* %d", hocon.Token(top), ignored[top]))
		}
		rep.Info = append(rep.Info, fmt.Sprintf("%s: ignored %d Gearpump-only settings that gear does not use (%s): Akka, Netty, serializer and JVM settings have no effect in gear",
			doc.Files()[0], nIgnored, strings.Join(parts, ", ")))
	}
	return layer
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// envLayer maps GEAR_* variables to keys. Other GEAR_* names (applications
// get some in their environment) are ignored unless they look like a typo
// of a gear variable.
func envLayer(env map[string]string, src map[string]source, rep *Report) map[string]any {
	layer := map[string]any{}
	envNames := slices.Sorted(maps.Keys(envIndex))
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if !strings.HasPrefix(name, "GEAR_") || name == EnvConf {
			continue
		}
		g, ok := envIndex[name]
		if !ok {
			if g, ok = envShort[name]; ok {
				if _, full := env[EnvName(g)]; full {
					continue // the full name wins
				}
			}
		}
		if !ok {
			best, bestD := "", 3
			for _, n := range envNames {
				if d := hocon.EditDistance(name, n); d < bestD {
					best, bestD = n, d
				}
			}
			if best != "" {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("env %s: not a gear setting, ignored, did you mean %s?", hocon.Token(name), best))
			}
			continue
		}
		layer[g] = env[name]
		src[g] = source{where: "env " + name, key: g}
	}
	return layer
}
