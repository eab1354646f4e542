package hocon

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// scanner walks the source rune by rune and tracks line and column.
type scanner struct {
	src  []byte
	off  int
	line int
	col  int
	file string
}

func newScanner(src []byte, file string) *scanner {
	s := &scanner{src: src, line: 1, col: 1, file: file}
	if len(src) >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF { // UTF-8 BOM
		s.off = 3
	}
	return s
}

func (s *scanner) pos() Pos { return Pos{File: s.file, Line: s.line, Col: s.col} }

func (s *scanner) eof() bool { return s.off >= len(s.src) }

// peek returns the rune at the current offset, or -1 at end of input.
func (s *scanner) peek() rune {
	if s.off >= len(s.src) {
		return -1
	}
	c := s.src[s.off]
	if c < utf8.RuneSelf {
		return rune(c)
	}
	r, _ := utf8.DecodeRune(s.src[s.off:])
	return r
}

// byteAt returns the byte i bytes ahead, or 0 past the end.
func (s *scanner) byteAt(i int) byte {
	if s.off+i >= len(s.src) || s.off+i < 0 {
		return 0
	}
	return s.src[s.off+i]
}

func (s *scanner) hasPrefix(p string) bool {
	return len(s.src)-s.off >= len(p) && string(s.src[s.off:s.off+len(p)]) == p
}

// advance moves past one rune (one byte for invalid UTF-8).
func (s *scanner) advance() {
	if s.off >= len(s.src) {
		return
	}
	c := s.src[s.off]
	if c == '\n' {
		s.line++
		s.col = 1
		s.off++
		return
	}
	if c < utf8.RuneSelf {
		s.off++
	} else {
		_, n := utf8.DecodeRune(s.src[s.off:])
		s.off += n
	}
	s.col++
}

// advanceTo moves forward to byte offset end.
func (s *scanner) advanceTo(end int) {
	for s.off < end && s.off < len(s.src) {
		s.advance()
	}
}

// isSpace is whitespace other than newline.
func isSpace(c rune) bool {
	if c == '\n' || c == -1 {
		return false
	}
	return c == ' ' || c == '\t' || c == '\r' || c == '\uFEFF' || unicode.IsSpace(c)
}

// describe renders a rune for "found X" in messages.
func describe(c rune) string {
	switch c {
	case -1:
		return "end of file"
	case '\n':
		return "newline"
	case '\t':
		return "tab"
	case '\r':
		return "carriage return"
	}
	if c == utf8.RuneError {
		return "invalid UTF-8"
	}
	if unicode.IsPrint(c) {
		return fmt.Sprintf("'%c'", c)
	}
	return fmt.Sprintf("character %U", c)
}
