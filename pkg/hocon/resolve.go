package hocon

import (
	"fmt"
	"slices"
	"strings"
)

// resolver turns the parsed tree (with substitutions, concatenations and
// merges) into a tree of plain objects, lists and scalars.
type resolver struct {
	root   *node
	env    func(string) (string, bool)
	cache  map[*node]*node
	absent map[*node]bool // resolved to "not set" (optional substitution)
	active map[*node]bool
	errs   ErrorList
}

func newResolver(root *node, env func(string) (string, bool)) *resolver {
	return &resolver{root: root, env: env, cache: map[*node]*node{}, absent: map[*node]bool{}, active: map[*node]bool{}}
}

func (r *resolver) errorf(pos Pos, key, format string, args ...any) {
	if len(r.errs) >= maxErrors {
		return
	}
	r.errs = append(r.errs, &Error{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (r *resolver) resolveRoot() *node {
	res := r.resolve(r.root, nil)
	if res == nil {
		return newObj(r.root.pos)
	}
	return res
}

// resolve returns the resolved form of n, or nil when n is an optional
// substitution that is not set. key is the path of n, for messages.
func (r *resolver) resolve(n *node, key []string) *node {
	if n.resolved {
		return n
	}
	if c, ok := r.cache[n]; ok {
		return c
	}
	if r.absent[n] {
		return nil
	}
	if r.active[n] {
		r.errorf(n.pos, renderPath(key), "substitution cycle: the value refers to itself through ${...}")
		return nil
	}
	r.active[n] = true
	defer delete(r.active, n)
	var out *node
	switch n.kind {
	case kScalar:
		c := *n
		out = &c
	case kObj:
		out = newObj(n.pos)
		keys := make([]string, 0, len(n.fields))
		for k := range n.fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if v := r.resolve(n.fields[k], append(slices.Clone(key), k)); v != nil {
				out.fields[k] = v
			}
		}
	case kArr:
		out = &node{kind: kArr, pos: n.pos, seq: n.seq, items: make([]*node, 0, len(n.items))}
		for _, it := range n.items {
			if v := r.resolve(it, key); v != nil {
				out.items = append(out.items, v)
			}
		}
	case kSubst:
		out = r.resolveSubst(n, key)
		if out != nil && out.kind != kObj {
			out.seq = n.seq
		}
	case kConcat:
		out = r.resolveConcat(n, key)
		if out != nil && out.kind != kObj {
			out.seq = n.seq
		}
	case kMerge:
		for _, part := range n.items {
			v := r.resolve(part, key)
			switch {
			case v == nil:
			case out != nil && out.kind == kObj && v.kind == kObj:
				out = mergeResolved(out, v)
			default:
				out = v
			}
		}
	}
	if out == nil {
		r.absent[n] = true
		return nil
	}
	out.resolved = true
	r.cache[n] = out
	return out
}

func (r *resolver) resolveSubst(n *node, key []string) *node {
	name := renderPath(n.path)
	before := len(r.errs)
	defer func() {
		if len(r.errs) > before+1 {
			r.errs = r.errs[:before+1] // one error per failed substitution
		}
	}()
	if !n.envOnly {
		if len(n.relPrefix) > 0 {
			if t, found := r.lookup(append(slices.Clone(n.relPrefix), n.path...), key); found {
				return withPos(t, n.pos)
			}
		}
		if t, found := r.lookup(n.path, key); found {
			return withPos(t, n.pos)
		}
	}
	if len(r.errs) > before {
		return nil // the target failed (e.g. a cycle), already reported
	}
	if v, ok := r.env(strings.Join(n.path, ".")); ok {
		return &node{kind: kScalar, pos: n.pos, val: v, text: v}
	}
	if n.optional {
		return nil
	}
	r.errorf(n.pos, renderPath(key), "${%s} is not set: no key %s in the configuration and no environment variable %s (use ${?%s} if it is optional)", Token(name), Token(name), Token(strings.Join(n.path, ".")), Token(name))
	return nil
}

// withPos gives a substituted scalar or list the position of the
// substitution, so errors point where the value was used.
func withPos(t *node, pos Pos) *node {
	if t == nil || t.kind == kObj {
		return t
	}
	c := *t
	c.pos = pos
	return &c
}

// lookup resolves path from the root. found=false when some segment is
// missing (or the value is an unset optional substitution).
func (r *resolver) lookup(path []string, key []string) (*node, bool) {
	cur := r.root
	for i, seg := range path {
		if cur.kind != kObj {
			res := r.resolve(cur, path[:i])
			if res == nil || res.kind != kObj {
				return nil, false
			}
			cur = res
		}
		next, ok := cur.fields[seg]
		if !ok {
			return nil, false
		}
		cur = next
	}
	res := r.resolve(cur, path)
	return res, res != nil
}

func (r *resolver) resolveConcat(n *node, key []string) *node {
	var parts []*node
	for _, part := range n.items {
		if part.ws {
			parts = append(parts, part)
			continue
		}
		if v := r.resolve(part, key); v != nil {
			parts = append(parts, v)
		}
	}
	var objs, arrs, strs int
	for _, p := range parts {
		switch {
		case p.ws:
		case p.kind == kObj:
			objs++
		case p.kind == kArr:
			arrs++
		default:
			strs++
		}
	}
	switch {
	case objs+arrs+strs == 0:
		return nil // only unset optional substitutions
	case objs > 0 && arrs == 0 && strs == 0:
		var out *node
		for _, p := range parts {
			if p.ws {
				continue
			}
			if out == nil {
				out = p
			} else {
				out = mergeResolved(out, p)
			}
		}
		return out
	case arrs > 0 && objs == 0 && strs == 0:
		out := &node{kind: kArr, pos: n.pos}
		for _, p := range parts {
			if !p.ws {
				out.items = append(out.items, p.items...)
			}
		}
		return out
	case objs > 0 || arrs > 0:
		kinds := []string{}
		if objs > 0 {
			kinds = append(kinds, "an object")
		}
		if arrs > 0 {
			kinds = append(kinds, "a list")
		}
		if strs > 0 {
			kinds = append(kinds, "a string")
		}
		r.errorf(n.pos, renderPath(key), "cannot concatenate %s: objects merge only with objects and lists only with lists (quote the value if it is text, or use += to append to a list)", strings.Join(kinds, " with "))
		return nil
	}
	// Strings: trim whitespace at the ends left by dropped optional parts.
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.text)
	}
	s := b.String()
	if parts[0].ws || parts[len(parts)-1].ws {
		s = strings.TrimSpace(s)
	}
	return &node{kind: kScalar, pos: n.pos, val: s, text: s}
}

// mergeResolved merges resolved object b into a copy of a.
func mergeResolved(a, b *node) *node {
	out := newObj(a.pos)
	out.resolved = true
	for k, v := range a.fields {
		out.fields[k] = v
	}
	for k, v := range b.fields {
		if e, ok := out.fields[k]; ok && e.kind == kObj && v.kind == kObj {
			out.fields[k] = mergeResolved(e, v)
		} else {
			out.fields[k] = v
		}
	}
	return out
}
