package hocon

import "slices"

// assign sets prefix+segs (relative to obj: segs) to v with HOCON merge,
// append and self-reference rules.
func (p *parser) assign(obj *node, prefix, segs []string, v *node, appendMode bool) {
	full := append(slices.Clone(prefix), segs...)
	detached := len(p.frames) > 0 && p.frames[len(p.frames)-1].detached
	if !detached {
		var keep bool
		v, keep = p.replaceSelfRefs(v, full)
		if !keep {
			return // ${?a} with no earlier a: the field is not set
		}
	}
	if appendMode {
		var prev *node
		if !detached {
			prev = p.lookupPrev(full)
		} else {
			prev = navigateRaw(obj, segs)
		}
		switch {
		case prev == nil:
			v = &node{kind: kArr, pos: v.pos, items: []*node{v}, owns: true}
		case prev.kind == kArr:
			// Append in place when prev owns its backing array (amortised
			// O(1) for many += of one key); ownership moves to the new node.
			items := prev.items
			if !prev.owns {
				items = slices.Clone(items)
			}
			prev.owns = false
			v = &node{kind: kArr, pos: v.pos, items: append(items, v), owns: true}
		default:
			v = &node{kind: kConcat, pos: v.pos, items: []*node{prev, {kind: kArr, pos: v.pos, items: []*node{v}}}}
		}
	}
	p.seq++
	v.seq = p.seq
	setPath(obj, segs, v)
}

// replaceSelfRefs replaces ${full} (the key's own path) at the top of v or
// in a concatenation with the key's previous value. keep=false means the
// whole value vanished.
func (p *parser) replaceSelfRefs(v *node, full []string) (*node, bool) {
	switch v.kind {
	case kSubst:
		if !slices.Equal(v.path, full) {
			return v, true
		}
		if prev := p.lookupPrev(full); prev != nil {
			c := *prev // shallow copy: the assignment gets its own position order
			c.owns = false
			return &c, true
		}
		if v.optional {
			return nil, false
		}
		c := *v
		c.envOnly = true
		return &c, true
	case kConcat:
		var out []*node
		changed := false
		for _, part := range v.items {
			r, keep := p.replaceSelfRefs(part, full)
			if r != part || !keep {
				changed = true
			}
			if keep {
				out = append(out, r)
			}
		}
		if !changed {
			return v, true
		}
		if len(out) == 0 {
			return nil, false
		}
		c := *v
		c.items = out
		return &c, true
	}
	return v, true
}

// lookupPrev finds the current (earlier) value of full among the objects
// being parsed, innermost first.
func (p *parser) lookupPrev(full []string) *node {
	for i := len(p.frames) - 1; i >= 0; i-- {
		f := p.frames[i]
		if f.detached || len(f.prefix) > len(full) || !slices.Equal(f.prefix, full[:len(f.prefix)]) {
			continue
		}
		if n := navigateRaw(f.obj, full[len(f.prefix):]); n != nil {
			return n
		}
	}
	return nil
}

func navigateRaw(obj *node, segs []string) *node {
	cur := obj
	for _, seg := range segs {
		if cur.kind == kMerge && cur.items[len(cur.items)-1].kind == kObj {
			cur = cur.items[len(cur.items)-1]
		}
		if cur.kind != kObj {
			return nil
		}
		cur = cur.fields[seg]
		if cur == nil {
			return nil
		}
	}
	return cur
}

// setPath stores v at segs under obj: objects merge, an object merges with
// a not-yet-resolved value, anything else replaces.
func setPath(obj *node, segs []string, v *node) {
	cur := obj
	for _, seg := range segs[:len(segs)-1] {
		child := cur.fields[seg]
		switch {
		case child != nil && child.kind == kObj:
			cur = child
		case child != nil && child.kind == kMerge && child.items[len(child.items)-1].kind == kObj:
			cur = child.items[len(child.items)-1]
		case child != nil && isUnresolved(child):
			n := newObj(v.pos)
			cur.fields[seg] = &node{kind: kMerge, pos: child.pos, items: []*node{child, n}}
			cur = n
		default:
			n := newObj(v.pos)
			cur.fields[seg] = n
			cur = n
		}
	}
	last := segs[len(segs)-1]
	e := cur.fields[last]
	switch {
	case e == nil:
		cur.fields[last] = v
	case v.kind == kObj && e.kind == kObj:
		mergeObj(e, v)
	case v.kind == kObj && e.kind == kMerge && e.items[len(e.items)-1].kind == kObj:
		mergeObj(e.items[len(e.items)-1], v)
	case v.kind == kObj && isUnresolved(e):
		cur.fields[last] = &node{kind: kMerge, pos: e.pos, items: []*node{e, v}}
	case isUnresolved(v):
		// Decided when resolved: an unset ${?x} keeps e, objects merge.
		cur.fields[last] = &node{kind: kMerge, pos: v.pos, items: []*node{e, v}}
	default:
		cur.fields[last] = v
	}
}

func mergeObj(dst, src *node) {
	keys := make([]string, 0, len(src.fields))
	for k := range src.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		setPath(dst, []string{k}, src.fields[k])
	}
}
