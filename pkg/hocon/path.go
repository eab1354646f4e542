package hocon

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// renderPath joins segments with '.', quoting segments that need it, so
// that the result parses back to the same path.
func renderPath(segs []string) string {
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(renderSegment(s))
	}
	return b.String()
}

func renderSegment(s string) string {
	plain := s != ""
	for i, r := range s {
		if !isKeyChar(r) || r == utf8.RuneError || (r == '/' && i+1 < len(s) && s[i+1] == '/') {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return quote(s)
}

// quote renders s as a HOCON quoted string; bytes that are not valid UTF-8
// are kept as they are, so parsing gives back the same bytes.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
		i++
	}
	b.WriteByte('"')
	return b.String()
}
