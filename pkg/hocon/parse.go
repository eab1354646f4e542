package hocon

// This file is the parser proper: the scanner and the recursive descent
// over HOCON's grammar, with its error recovery (every error is collected
// with file:line:col before giving up). It is longer than the others
// because the grammar reads best top to bottom in one place; values,
// includes, substitution and errors live in their own files.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

const (
	maxErrors       = 50
	maxDepth        = 200
	maxIncludeDepth = 16
	// MaxFileSize bounds how much of one configuration file is read.
	MaxFileSize = 16 << 20
)

type kind uint8

const (
	kObj    kind = iota // fields
	kArr                // items
	kScalar             // val/text
	kSubst              // ${path}
	kConcat             // items: pieces of "a b ${c}" on one line
	kMerge              // items: successive values of one key, objects merge, others replace
)

type node struct {
	kind   kind
	pos    Pos
	fields map[string]*node
	items  []*node
	val    any    // kScalar: string, int64, float64, bool or nil
	text   string // kScalar: text used when concatenated
	ws     bool   // whitespace piece of a concatenation

	path      []string // kSubst
	optional  bool     // ${?...}
	envOnly   bool     // self-reference with no earlier value: only the environment can answer
	relPrefix []string // kSubst inside a file included under this path

	owns     bool // kArr: items' backing array is not shared, appends may reuse it
	seq      int  // order of assignment in the whole parse (later = larger)
	resolved bool
}

func newObj(p Pos) *node { return &node{kind: kObj, pos: p, fields: map[string]*node{}} }

func isUnresolved(n *node) bool { return n.kind == kSubst || n.kind == kConcat || n.kind == kMerge }

// Options controls the environment and file access of a parse. The zero
// value uses the process environment and the local file system.
type Options struct {
	// LookupEnv answers ${VAR} substitutions not found in the document.
	// nil means os.LookupEnv.
	LookupEnv func(name string) (string, bool)
	// ReadFile reads included files (and the file given to ParseFileWith).
	// nil means reading regular files of at most MaxFileSize bytes.
	ReadFile func(path string) ([]byte, error)
}

// ReadRegularFile reads path, refusing at once anything that is not a regular
// file (a FIFO, a device, a directory, a socket: reading one could block
// forever or never end) or is larger than MaxFileSize. The file is opened
// with O_NONBLOCK, so that opening a FIFO with no writer does not block, and
// checked with fstat on the descriptor opened, so that nothing can swap the
// file between the check and the read.
func ReadRegularFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			// A unix socket (or a FIFO opened for writing without a
			// reader): say what it is rather than "no such device".
			if st, serr := os.Stat(path); serr == nil && !st.Mode().IsRegular() {
				return nil, notRegular(path, st.Mode())
			}
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, notRegular(path, st.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// ErrNotRegular is matched by the error ReadRegularFile returns for a path
// that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

func notRegular(path string, m fs.FileMode) error {
	what := "not a plain file"
	switch {
	case m&fs.ModeNamedPipe != 0:
		what = "a FIFO"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	case m.IsDir():
		what = "a directory"
	}
	return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, what)
}

func (o Options) withDefaults() Options {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.ReadFile == nil {
		o.ReadFile = ReadRegularFile
	}
	return o
}

// Parse parses data; filename is used in positions and as the base for
// relative includes ("" = the current directory).
func Parse(data []byte, filename string) (*Document, error) {
	return ParseWith(data, filename, Options{})
}

// ParseFile reads and parses the file at path.
func ParseFile(path string) (*Document, error) {
	return ParseFileWith(path, Options{})
}

// ParseFileWith reads path with opts.ReadFile and parses it.
func ParseFileWith(path string, opts Options) (*Document, error) {
	opts = opts.withDefaults()
	data, err := opts.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	return ParseWith(data, path, opts)
}

// ParseWith is Parse with explicit Options.
func ParseWith(data []byte, filename string, opts Options) (*Document, error) {
	opts = opts.withDefaults()
	p := &parser{
		s:    newScanner(data, filename),
		opts: opts,
		root: newObj(Pos{File: filename, Line: 1, Col: 1}),
	}
	if filename != "" {
		p.includes = []string{filepath.Clean(filename)}
		p.files = []string{filename}
	}
	p.parseDocument()
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	r := newResolver(p.root, opts.LookupEnv)
	res := r.resolveRoot()
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	return newDocument(res, p.files), nil
}

type frame struct {
	prefix   []string
	obj      *node
	detached bool // object inside a list: no path, no self-references
}

type parser struct {
	s          *scanner
	opts       Options
	errs       ErrorList
	root       *node
	frames     []frame
	includes   []string // stack of files being parsed, for cycle detection
	files      []string // every file read
	relPrefix  []string // path the current included file is included under
	depth      int
	seq        int
	openBraces int // '{' opened in the current file and not closed yet
	stop       bool
}

func (p *parser) errorf(pos Pos, key, format string, args ...any) {
	if p.stop {
		return
	}
	if len(p.errs) >= maxErrors {
		p.errs = append(p.errs, &Error{Pos: pos, Msg: fmt.Sprintf("too many errors (more than %d), giving up", maxErrors)})
		p.stop = true
		return
	}
	p.errs = append(p.errs, &Error{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// skipSpace skips blanks but not newlines.
func (p *parser) skipSpace() {
	for isSpace(p.s.peek()) {
		p.s.advance()
	}
}

func (p *parser) atComment() bool {
	c := p.s.peek()
	return c == '#' || (c == '/' && p.s.byteAt(1) == '/')
}

// skipComment skips a comment up to (not including) the newline.
func (p *parser) skipComment() {
	if !p.atComment() {
		return
	}
	for c := p.s.peek(); c != '\n' && c != -1; c = p.s.peek() {
		p.s.advance()
	}
}

// skipBlank skips spaces, comments and newlines.
func (p *parser) skipBlank() {
	for {
		p.skipSpace()
		p.skipComment()
		if p.s.peek() != '\n' {
			return
		}
		p.s.advance()
	}
}

// recoverLine skips the rest of the line after an error, stopping early at
// a '}' that may close the object being parsed.
func (p *parser) recoverLine() {
	for c := p.s.peek(); c != '\n' && c != -1; c = p.s.peek() {
		if c == '}' && p.inObject() {
			return
		}
		p.s.advance()
	}
}

// inObject reports whether a '}' would close an object being parsed.
func (p *parser) inObject() bool { return p.openBraces > 0 }

func (p *parser) parseDocument() {
	p.skipBlank()
	if p.s.peek() == '{' {
		open := p.s.pos()
		p.s.advance()
		p.openBraces++
		p.parseFields(p.root, nil, '}', open, false)
		p.openBraces--
		if p.s.peek() == '}' {
			p.s.advance()
		}
		p.skipBlank()
		if !p.s.eof() {
			p.errorf(p.s.pos(), "", "unexpected %s after the closing '}' of the root object: expected end of file", describe(p.s.peek()))
		}
		return
	}
	p.parseFields(p.root, nil, -1, Pos{}, false)
}

// parseFields parses fields into obj until closer ('}' or -1 for end of
// file) without consuming the closer.
func (p *parser) parseFields(obj *node, prefix []string, closer rune, open Pos, detached bool) {
	p.frames = append(p.frames, frame{prefix: prefix, obj: obj, detached: detached})
	defer func() { p.frames = p.frames[:len(p.frames)-1] }()
	ctx := renderPath(prefix)
	for !p.stop {
		p.skipBlank()
		c := p.s.peek()
		switch {
		case c == ',':
			p.s.advance() // stray separator: harmless
			continue
		case c == -1:
			if closer == '}' {
				p.errorf(open, "", "'{' opened here is never closed: expected '}', found end of file")
			}
			return
		case c == closer:
			return
		case c == '}' || c == ']' || c == '=' || c == ':' || c == '[':
			what := "a key or '}'"
			if closer == -1 {
				what = "a key or end of file"
			}
			p.errorf(p.s.pos(), ctx, "unexpected %s: expected %s", describe(c), what)
			p.s.advance()
			p.recoverLine()
			continue
		}
		if p.atInclude() {
			p.parseInclude(obj, prefix)
			p.endOfField(closer, ctx)
			continue
		}
		p.parseField(obj, prefix, ctx, closer)
	}
}

func (p *parser) parseField(obj *node, prefix []string, ctx string, closer rune) {
	segs, ok := p.parseKey(ctx, "a key")
	if !ok {
		p.recoverLine()
		return
	}
	full := append(slices.Clone(prefix), segs...)
	keyName := renderPath(full)
	p.skipSpace()
	appendMode := false
	switch c := p.s.peek(); {
	case c == '=' || c == ':':
		p.s.advance()
	case c == '+' && p.s.byteAt(1) == '=':
		p.s.advance()
		p.s.advance()
		appendMode = true
	case c == '{':
	default:
		p.errorf(p.s.pos(), keyName, "expected '=' , ':' or '{' after key %s, found %s", quoteToken(renderPath(segs)), describe(c))
		p.recoverLine()
		return
	}
	p.skipSpace()
	v, ok := p.parseValue(full, keyName, true)
	if !ok {
		p.recoverLine()
		return
	}
	p.assign(obj, prefix, segs, v, appendMode)
	p.endOfField(closer, keyName)
}

func (p *parser) endOfField(closer rune, key string) {
	p.skipSpace()
	p.skipComment()
	switch c := p.s.peek(); c {
	case '\n', ',':
		p.s.advance()
	case -1:
	default:
		if c == closer {
			return
		}
		what := "a newline or ','"
		if closer == '}' {
			what = "a newline, ',' or '}'"
		}
		p.errorf(p.s.pos(), key, "expected %s after the value, found %s", what, describe(c))
		p.recoverLine()
	}
}

// isKeyChar reports whether c may appear in an unquoted key segment.
func isKeyChar(c rune) bool {
	if c == -1 || c == '\n' || isSpace(c) {
		return false
	}
	return !strings.ContainsRune(".\"{}[]:=,+#$\\`^?!@*&", c)
}

// parseKey parses a path expression: segments separated by '.', each made
// of unquoted characters and quoted strings.
func (p *parser) parseKey(ctx, what string) ([]string, bool) {
	var segs []string
	for {
		var b strings.Builder
		start := p.s.pos()
		any := false
		for {
			c := p.s.peek()
			if c == '"' {
				if p.s.hasPrefix(`"""`) {
					p.errorf(p.s.pos(), ctx, "a triple-quoted string cannot be used as a key: use a quoted string")
					return nil, false
				}
				s, ok := p.parseQuoted(ctx)
				if !ok {
					return nil, false
				}
				b.WriteString(s)
				any = true
				continue
			}
			if isKeyChar(c) && (c != '/' || p.s.byteAt(1) != '/') {
				from := p.s.off
				p.s.advance()
				b.Write(p.s.src[from:p.s.off])
				any = true
				continue
			}
			break
		}
		if !any {
			c := p.s.peek()
			if len(segs) > 0 {
				p.errorf(start, ctx, "expected a key segment after '.', found %s", describe(c))
			} else {
				p.errorf(start, ctx, "expected %s, found %s", what, describe(c))
			}
			return nil, false
		}
		segs = append(segs, b.String())
		if p.s.peek() != '.' {
			return segs, true
		}
		p.s.advance()
	}
}

// parseQuoted parses a "..." string with JSON escapes.
func (p *parser) parseQuoted(key string) (string, bool) {
	open := p.s.pos()
	p.s.advance()
	var b strings.Builder
	for {
		c := p.s.peek()
		switch c {
		case -1, '\n':
			p.errorf(open, key, "unterminated string: expected a closing '\"' before %s", describe(c))
			return "", false
		case '"':
			p.s.advance()
			return b.String(), true
		case '\\':
			epos := p.s.pos()
			p.s.advance()
			e := p.s.peek()
			switch e {
			case '"', '\\', '/':
				b.WriteRune(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					p.errorf(epos, key, "invalid \\u escape in string: want \\u followed by 4 hex digits")
					continue
				}
				if r >= 0xD800 && r < 0xDC00 && p.s.byteAt(1) == '\\' && p.s.byteAt(2) == 'u' {
					save := *p.s
					p.s.advance()
					p.s.advance()
					if lo, ok := p.hex4(); ok && lo >= 0xDC00 && lo < 0xE000 {
						r = (r-0xD800)<<10 + (lo - 0xDC00) + 0x10000
					} else {
						*p.s = save
					}
				}
				b.WriteRune(r)
			case -1, '\n':
				continue // reported as unterminated on the next turn
			default:
				p.errorf(epos, key, "invalid escape '\\%s' in string: valid escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX", strings.Trim(describe(e), "'"))
			}
			p.s.advance()
		default:
			from := p.s.off
			p.s.advance()
			b.Write(p.s.src[from:p.s.off])
		}
	}
}

// hex4 reads the 4 hex digits after 'u' (the scanner is on the 'u'); on
// success the scanner is left on the last digit.
func (p *parser) hex4() (rune, bool) {
	if p.s.off+5 > len(p.s.src) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.s.src[p.s.off+1:p.s.off+5]), 16, 32)
	if err != nil {
		return 0, false
	}
	for range 4 {
		p.s.advance()
	}
	return rune(v), true
}

func (p *parser) parseTriple(key string) (*node, bool) {
	open := p.s.pos()
	for range 3 {
		p.s.advance()
	}
	rest := p.s.src[p.s.off:]
	end := bytes.Index(rest, []byte(`"""`))
	if end < 0 {
		p.errorf(open, key, `unterminated triple-quoted string: expected a closing """, found end of file`)
		p.s.advanceTo(len(p.s.src))
		return nil, false
	}
	for end+3 < len(rest) && rest[end+3] == '"' {
		end++
	}
	text := string(rest[:end])
	p.s.advanceTo(p.s.off + end + 3)
	return &node{kind: kScalar, pos: open, val: text, text: text}, true
}

// startsValue reports whether the input at the scanner starts a value piece.
func (p *parser) startsValue() bool {
	c := p.s.peek()
	switch {
	case c == '"' || c == '{' || c == '[':
		return true
	case c == '$' && p.s.byteAt(1) == '{':
		return true
	case c == '=' || c == ':':
		return false
	}
	return isValueChar(c) && !p.atComment()
}

func isValueChar(c rune) bool {
	if c == -1 || c == '\n' || isSpace(c) {
		return false
	}
	return !strings.ContainsRune("\"{}[],#", c)
}

var numberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func (p *parser) parseUnquoted() *node {
	pos := p.s.pos()
	from := p.s.off
	for {
		c := p.s.peek()
		if !isValueChar(c) || (c == '$' && p.s.byteAt(1) == '{') {
			break
		}
		p.s.advance()
	}
	text := string(p.s.src[from:p.s.off])
	return &node{kind: kScalar, pos: pos, val: scalarValue(text), text: text}
}

// scalarValue types one unquoted token.
func scalarValue(text string) any {
	switch text {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if numberRE.MatchString(text) {
		if !strings.ContainsAny(text, ".eE") {
			if i, err := strconv.ParseInt(text, 10, 64); err == nil {
				return i
			}
		}
		if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsInf(f, 0) {
			return f
		}
	}
	return text
}

// parseValue parses a value and any concatenation after it on the same
// line. full is the key path being assigned (nil inside lists).
func (p *parser) parseValue(full []string, key string, field bool) (*node, bool) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		p.errorf(p.s.pos(), key, "values nested deeper than %d levels", maxDepth)
		p.stop = true
		return nil, false
	}
	var parts []*node
	for !p.stop {
		var piece *node
		ok := true
		c := p.s.peek()
		switch {
		case c == '"' && p.s.hasPrefix(`"""`):
			piece, ok = p.parseTriple(key)
		case c == '"':
			pos := p.s.pos()
			var s string
			s, ok = p.parseQuoted(key)
			piece = &node{kind: kScalar, pos: pos, val: s, text: s}
		case c == '{':
			piece, ok = p.parseObjectValue(full, key, !field)
		case c == '[':
			piece, ok = p.parseArray(key)
		case c == '$' && p.s.byteAt(1) == '{':
			piece, ok = p.parseSubst(key)
		case p.startsValue():
			piece = p.parseUnquoted()
		default:
			if len(parts) == 0 {
				p.errorf(p.s.pos(), key, "expected a value (string, number, true/false, null, {...}, [...] or ${...}), found %s", describe(c))
				return nil, false
			}
		}
		if !ok {
			return nil, false
		}
		if piece == nil {
			break
		}
		parts = append(parts, piece)
		wsFrom, wsPos := p.s.off, p.s.pos()
		p.skipSpace()
		if !p.startsValue() {
			break
		}
		if p.s.off > wsFrom {
			ws := string(p.s.src[wsFrom:p.s.off])
			parts = append(parts, &node{kind: kScalar, pos: wsPos, val: ws, text: ws, ws: true})
		}
	}
	if p.stop {
		return nil, false
	}
	if len(parts) == 1 {
		return parts[0], true
	}
	return &node{kind: kConcat, pos: parts[0].pos, items: parts}, true
}

func (p *parser) parseObjectValue(full []string, key string, detached bool) (*node, bool) {
	open := p.s.pos()
	p.s.advance()
	obj := newObj(open)
	if len(p.frames) > 0 && p.frames[len(p.frames)-1].detached {
		detached = true
	}
	p.openBraces++
	p.parseFields(obj, full, '}', open, detached || full == nil)
	p.openBraces--
	if p.s.peek() != '}' {
		return nil, false // reported by parseFields
	}
	p.s.advance()
	return obj, true
}

func (p *parser) parseArray(key string) (*node, bool) {
	open := p.s.pos()
	p.s.advance()
	arr := &node{kind: kArr, pos: open}
	skip := func() {
		for c := p.s.peek(); c != ',' && c != '\n' && c != ']' && c != -1; c = p.s.peek() {
			p.s.advance()
		}
	}
	for !p.stop {
		mark := *p.s
		p.skipBlank()
		switch c := p.s.peek(); c {
		case ']':
			p.s.advance()
			return arr, true
		case -1:
			p.errorf(open, key, "'[' opened here is never closed: expected ']', found end of file")
			return nil, false
		case ',':
			p.errorf(p.s.pos(), key, "unexpected ',' in list: expected a value or ']'")
			p.s.advance()
			continue
		}
		v, ok := p.parseValue(nil, key, false)
		if !ok {
			skip()
			continue
		}
		arr.items = append(arr.items, v)
		p.skipSpace()
		if c := p.s.peek(); c == '=' || c == ':' || (c == '+' && p.s.byteAt(1) == '=') {
			// Looks like "key = value": the list was never closed. Report it
			// and go back to before this line so the field parses normally.
			p.errorf(open, key, "'[' opened here is not closed: expected ']' before %s on line %d", quoteToken(v.text), v.pos.Line)
			*p.s = mark
			return arr, true
		}
		p.skipComment()
		switch c := p.s.peek(); c {
		case ',':
			p.s.advance()
		case '\n', ']':
		default:
			if c == -1 {
				continue // reported at the top of the loop
			}
			p.errorf(p.s.pos(), key, "expected ',' , newline or ']' after a list element, found %s", describe(c))
			skip()
		}
	}
	return nil, false
}

func (p *parser) parseSubst(key string) (*node, bool) {
	pos := p.s.pos()
	p.s.advance()
	p.s.advance()
	n := &node{kind: kSubst, pos: pos, relPrefix: p.relPrefix}
	if p.s.peek() == '?' {
		n.optional = true
		p.s.advance()
	}
	p.skipSpace()
	segs, ok := p.parseKey(key, "a path or variable name in ${...}")
	if !ok {
		return nil, false
	}
	n.path = segs
	p.skipSpace()
	if c := p.s.peek(); c != '}' {
		p.errorf(p.s.pos(), key, "expected '}' to close the substitution ${%s, found %s", Token(renderPath(segs)), describe(c))
		return nil, false
	}
	p.s.advance()
	return n, true
}
