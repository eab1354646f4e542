package hocon

import (
	"os"
	"strings"
	"testing"
)

func BenchmarkParseGearpumpFull(b *testing.B) {
	data, err := os.ReadFile("testdata/gearpump-full.conf")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseWith(data, "gearpump-full.conf", Options{LookupEnv: noEnv}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPathological covers inputs that could be quadratic: many appends
// to one key, deep nesting and long concatenations.
func BenchmarkPathological(b *testing.B) {
	inputs := map[string]string{
		"appends":  strings.Repeat("a += 1\n", 20000),
		"nesting":  strings.Repeat("a {", 150) + strings.Repeat("}", 150),
		"concat":   "a = " + strings.Repeat("x ", 50000),
		"merges":   strings.Repeat("o { k = 1 }\n", 20000),
		"errors":   strings.Repeat("}\n", 20000),
		"lists":    "a = [" + strings.Repeat("[", 150) + strings.Repeat("]", 150) + "]",
		"substs":   "x = 1\n" + strings.Repeat("y = ${x}\n", 20000),
		"triples":  strings.Repeat(`a = """x"""`+"\n", 20000),
		"unclosed": strings.Repeat("a = \"", 20000),
	}
	for name, src := range inputs {
		b.Run(name, func(b *testing.B) {
			data := []byte(src)
			for b.Loop() {
				ParseWith(data, "p.conf", Options{LookupEnv: noEnv})
			}
		})
	}
}
