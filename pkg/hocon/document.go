package hocon

import (
	"slices"
)

// Document is a parsed and resolved configuration.
type Document struct {
	root   *node
	leaves map[string]*node
	keys   []string
	files  []string
}

func newDocument(root *node, files []string) *Document {
	d := &Document{root: root, leaves: map[string]*node{}, files: files}
	var walk func(n *node, path []string)
	walk = func(n *node, path []string) {
		if n.kind != kObj {
			d.leaves[renderPath(path)] = n
			return
		}
		for k, v := range n.fields {
			walk(v, append(slices.Clone(path), k))
		}
	}
	walk(root, nil)
	d.keys = make([]string, 0, len(d.leaves))
	for k := range d.leaves {
		d.keys = append(d.keys, k)
	}
	slices.Sort(d.keys)
	return d
}

// Map returns the document as nested map[string]any. Leaves are string,
// int64, float64, bool, []any or nil. Each call returns a fresh copy.
func (d *Document) Map() map[string]any {
	return toMap(d.root)
}

func toMap(n *node) map[string]any {
	m := make(map[string]any, len(n.fields))
	for k, v := range n.fields {
		m[k] = toAny(v)
	}
	return m
}

func toAny(n *node) any {
	switch n.kind {
	case kObj:
		return toMap(n)
	case kArr:
		out := make([]any, len(n.items))
		for i, it := range n.items {
			out[i] = toAny(it)
		}
		return out
	}
	return n.val
}

// Keys returns every leaf key (a value that is not an object; lists are
// leaves) as a dotted path, sorted. Segments that contain '.' or other
// special characters are quoted: serializers."a.b.C".
func (d *Document) Keys() []string { return slices.Clone(d.keys) }

// Pos returns where the value of a leaf key starts (for a key set several
// times: the last assignment; for a substituted value: the ${...}).
func (d *Document) Pos(dottedKey string) (Pos, bool) {
	n, ok := d.leaves[dottedKey]
	if !ok {
		return Pos{}, false
	}
	return n.pos, true
}

// Order returns a number that grows with the order in which leaf keys were
// last assigned (across includes, in reading order), so callers can let the
// later of two alias keys win. ok=false if the key is not a leaf.
func (d *Document) Order(dottedKey string) (int, bool) {
	n, ok := d.leaves[dottedKey]
	if !ok {
		return 0, false
	}
	return n.seq, true
}

// ElemPos returns where element i of the list at dottedKey starts.
func (d *Document) ElemPos(dottedKey string, i int) (Pos, bool) {
	n, ok := d.leaves[dottedKey]
	if !ok || n.kind != kArr || i < 0 || i >= len(n.items) {
		return Pos{}, false
	}
	return n.items[i].pos, true
}

// Get returns the value of a leaf key (as in Map).
func (d *Document) Get(dottedKey string) (any, bool) {
	n, ok := d.leaves[dottedKey]
	if !ok {
		return nil, false
	}
	return toAny(n), true
}

// Files returns the file parsed first and every file it included, in the
// order they were read.
func (d *Document) Files() []string { return slices.Clone(d.files) }

// SplitKey splits a dotted key as returned by Keys into its segments,
// unquoting quoted segments. It returns nil if the key does not parse.
func SplitKey(dottedKey string) []string {
	p := &parser{s: newScanner([]byte(dottedKey), "")}
	segs, ok := p.parseKey("", "a key")
	if !ok || !p.s.eof() {
		return nil
	}
	return segs
}

// JoinKey renders segments as a dotted key, quoting where needed (the
// inverse of SplitKey).
func JoinKey(segs ...string) string { return renderPath(segs) }
