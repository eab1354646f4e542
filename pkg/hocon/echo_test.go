package hocon

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestTokenAndEscape(t *testing.T) {
	long := strings.Repeat("k", 100)
	tests := []struct {
		in, token, escape string
	}{
		{"gear.hostname", "gear.hostname", "gear.hostname"},
		{"héllo wörld", "héllo wörld", "héllo wörld"},
		{"\x1b[2J", `\x1b[2J`, `\x1b[2J`},
		{"a\x00b\x07", `a\x00b\a`, `a\x00b\a`},
		{"\xff\xfe", `\xff\xfe`, `\xff\xfe`},
		{"zero\u200bwidth", `zero\u200bwidth`, `zero\u200bwidth`},
		{"del\x7f", `del\x7f`, `del\x7f`},
		{"line\nnext\ttab", "line\nnext\ttab", "line\nnext\ttab"},
		{long, strings.Repeat("k", 40) + "...", long},
		{strings.Repeat("\x1b", 50), strings.Repeat(`\x1b`, 40) + "...", strings.Repeat(`\x1b`, 50)},
	}
	for _, tt := range tests {
		if tok := Token(tt.in); tok != tt.token {
			t.Errorf("Token(%q) = %q, want %q", tt.in, Token(tt.in), tt.token)
		}
		if got := Escape(tt.in); got != tt.escape {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.escape)
		}
	}
}

// checkPrintable fails when msg would put raw control bytes or invalid
// UTF-8 on a terminal, or repeats more than 40 characters of the same run
// of garbage.
func checkPrintable(t *testing.T, what, msg string) {
	t.Helper()
	if !utf8.ValidString(msg) {
		t.Fatalf("%s: message is not valid UTF-8: %q", what, msg)
	}
	for _, r := range msg {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
			t.Fatalf("%s: message holds unprintable %U: %q", what, r, msg)
		}
	}
}

// Parsing binary garbage and escape sequences gives errors that are safe to
// print: every byte of the input that is not printable text is escaped, and
// long tokens are cut.
func TestErrorsNeverEchoRawBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 3))
	inputs := map[string][]byte{
		"NUL and ESC":      []byte("a = \x1b[31mred\x00\x07 b\n\xff\xfe = 1\n\"\x1b]0;title\x07\" { x = [1\n" + "key\x1b[2J = x\n"),
		"terminal escape":  []byte("\x1b]0;pwned\x07\x1b[2J\x1b[H = 1\n"),
		"long garbage key": []byte("\"" + strings.Repeat("\x1b", 5000) + "\" = { \n"),
		"long bare key":    []byte(strings.Repeat("k", 5000) + " ? 1\n"),
	}
	for i := range 20 {
		b := make([]byte, 2000)
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		inputs["random "+string(rune('a'+i))] = b
	}
	for name, data := range inputs {
		_, err := Parse(data, "garbage.conf")
		if err == nil {
			t.Fatalf("%s: parsed without error", name)
		}
		msg := err.Error()
		checkPrintable(t, name, msg)
		if strings.Contains(msg, strings.Repeat(`\x1b`, 41)) || strings.Contains(msg, strings.Repeat("k", 41)) {
			t.Errorf("%s: a long token is echoed in full: %.300s", name, msg)
		}
	}
}
