package hocon

import (
	"fmt"
	"strings"
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

// Error returns "file:line:col: key: msg".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos.IsValid() || e.Pos.File != "" {
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
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
