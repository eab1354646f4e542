package hocon

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// atInclude reports whether the field starting here is an include directive
// (and not a key named "include").
func (p *parser) atInclude() bool {
	if !p.s.hasPrefix("include") {
		return false
	}
	i := 7
	c := p.s.byteAt(i)
	if c != ' ' && c != '\t' {
		return false
	}
	for c == ' ' || c == '\t' {
		i++
		c = p.s.byteAt(i)
	}
	rest := p.s.src[p.s.off+i:]
	if c == '"' {
		return true
	}
	for _, w := range []string{"file(", "required(", "url(", "classpath("} {
		if strings.HasPrefix(string(rest[:min(len(rest), len(w))]), w) {
			return true
		}
	}
	return false
}

// parseIncludeSpec parses `"name"`, `file("name")`, `required(...)`.
func (p *parser) parseIncludeSpec(key string, required *bool) (string, bool) {
	p.skipSpace()
	if p.s.peek() == '"' {
		return p.parseQuoted(key)
	}
	pos := p.s.pos()
	from := p.s.off
	for c := p.s.peek(); c >= 'a' && c <= 'z'; c = p.s.peek() {
		p.s.advance()
	}
	word := string(p.s.src[from:p.s.off])
	if p.s.peek() != '(' {
		p.errorf(pos, key, "expected \"file\", file(\"...\") or required(...) after include, found %q", word)
		return "", false
	}
	p.s.advance()
	var name string
	var ok bool
	switch word {
	case "required":
		*required = true
		name, ok = p.parseIncludeSpec(key, required)
	case "file":
		p.skipSpace()
		if c := p.s.peek(); c != '"' {
			p.errorf(p.s.pos(), key, "expected a quoted file name in include file(...), found %s", describe(c))
			return "", false
		}
		name, ok = p.parseQuoted(key)
	case "url", "classpath":
		p.errorf(pos, key, "include %s(...) is not supported: use include file(\"path\") or include \"path\"", word)
		return "", false
	default:
		p.errorf(pos, key, "unknown include form %s(...): valid forms are \"file\", file(\"file\") and required(...)", word)
		return "", false
	}
	if !ok {
		return "", false
	}
	p.skipSpace()
	if c := p.s.peek(); c != ')' {
		p.errorf(p.s.pos(), key, "expected ')' to close %s(, found %s", word, describe(c))
		return "", false
	}
	p.s.advance()
	return name, true
}

func (p *parser) parseInclude(obj *node, prefix []string) {
	key := renderPath(prefix)
	pos := p.s.pos()
	for range 7 {
		p.s.advance()
	}
	required := false
	name, ok := p.parseIncludeSpec(key, &required)
	if !ok {
		p.recoverLine()
		return
	}
	path := name
	if !filepath.IsAbs(path) {
		base := "."
		if p.s.file != "" {
			base = filepath.Dir(p.s.file)
		}
		path = filepath.Join(base, path)
	}
	data, err := p.opts.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && filepath.Ext(path) == "" {
		if d, err2 := p.opts.ReadFile(path + ".conf"); err2 == nil {
			data, err, path = d, nil, path+".conf"
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if required {
			p.errorf(pos, key, "required include %q not found (looked for %s)", name, path)
		}
		return
	case err != nil:
		p.errorf(pos, key, "cannot read include %q: %v", name, err)
		return
	}
	clean := filepath.Clean(path)
	if slices.Contains(p.includes, clean) {
		p.errorf(pos, key, "include cycle: %s is already being included (%s)", path, strings.Join(p.includes, " -> "))
		return
	}
	if len(p.includes) >= maxIncludeDepth {
		p.errorf(pos, key, "includes nested deeper than %d files", maxIncludeDepth)
		return
	}
	saved, savedRel, savedBraces := p.s, p.relPrefix, p.openBraces
	p.openBraces = 0
	p.s = newScanner(data, path)
	p.relPrefix = slices.Clone(prefix)
	p.includes = append(p.includes, clean)
	p.files = append(p.files, path)
	p.skipBlank()
	if p.s.peek() == '{' {
		open := p.s.pos()
		p.s.advance()
		p.openBraces++
		p.parseFields(obj, prefix, '}', open, false)
		p.openBraces--
		if p.s.peek() == '}' {
			p.s.advance()
		}
		p.skipBlank()
		if !p.s.eof() {
			p.errorf(p.s.pos(), key, "unexpected %s after the closing '}' of the included file: expected end of file", describe(p.s.peek()))
		}
	} else {
		p.parseFields(obj, prefix, -1, Pos{}, false)
	}
	p.includes = p.includes[:len(p.includes)-1]
	p.s, p.relPrefix, p.openBraces = saved, savedRel, savedBraces
}
