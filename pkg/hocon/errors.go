package hocon

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pos is a position in a configuration file. Line and Col are 1-based; Col
// counts runes.
type Pos struct {
	File string
	Line int
	Col  int
}

// String returns "file:line:col" (or "line:col" when File is empty).
func (p Pos) String() string {
	if p.File == "" {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// IsValid reports whether p points somewhere (Line > 0).
func (p Pos) IsValid() bool { return p.Line > 0 }

// Error is one syntax or resolution error.
type Error struct {
	Pos Pos
	Key string // dotted key being parsed, "" when unknown
	Msg string
}

// Error returns "file:line:col: key: msg", with anything unprintable
// escaped and the key cut to 40 characters (see Token).
func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos.IsValid() || e.Pos.File != "" {
		b.WriteString(Escape(e.Pos.String()))
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(Token(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(Escape(e.Msg))
	return b.String()
}

// ErrorList is every error found in a document, in the order found.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the individual *Error values.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// maxEcho is how many characters of a token from the input (a key, a
// word) an error message repeats.
const maxEcho = 40

// Token renders a piece of the input for an error or warning message:
// control characters, invalid UTF-8 and other unprintable runes are escaped
// as in a Go string literal (\x1b, \x00, \xff, \u200b), and anything after
// the first 40 characters is replaced by "...". A configuration file full
// of binary garbage must not write raw bytes to the user's terminal, nor
// echo a megabyte-long key.
func Token(s string) string { return Escape(clip(s)) }

// quoteToken is Token in double quotes, for "%q"-style messages.
func quoteToken(s string) string { return strconv.Quote(clip(s)) }

// clip cuts s after maxEcho characters (an invalid byte counts as one).
func clip(s string) string {
	n := 0
	for i := 0; i < len(s); n++ {
		if n == maxEcho {
			return s[:i] + "..."
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s
}

// Escape escapes control characters (except newline and tab), invalid
// UTF-8 and other unprintable runes in s as in a Go string literal, and
// leaves everything else, printable non-ASCII text included, as it is.
func Escape(s string) string {
	clean := true
	for i, r := range s {
		if !printable(s, i, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if printable(s, i, r) {
			b.WriteRune(r)
			continue
		}
		if r == utf8.RuneError {
			fmt.Fprintf(&b, `\x%02x`, s[i])
			continue
		}
		q := strconv.QuoteRune(r) // '\x1b', '\u200b'
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

func printable(s string, i int, r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return true
	case r == utf8.RuneError:
		_, size := utf8.DecodeRuneInString(s[i:])
		return size > 1 // a real U+FFFD in the text
	}
	return unicode.IsPrint(r)
}
