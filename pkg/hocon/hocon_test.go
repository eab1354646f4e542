package hocon

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
)

func noEnv(string) (string, bool) { return "", false }

func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mustParse(t *testing.T, src string, opts Options) *Document {
	t.Helper()
	if opts.LookupEnv == nil {
		opts.LookupEnv = noEnv
	}
	d, err := ParseWith([]byte(src), "t.conf", opts)
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	return d
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  []string
		want map[string]any
	}{
		{"nested block", "a { b = 1 }", nil, map[string]any{"a": map[string]any{"b": int64(1)}}},
		{"key = object", "a = { b = x }", nil, map[string]any{"a": map[string]any{"b": "x"}}},
		{"colon", "a : 1.5", nil, map[string]any{"a": 1.5}},
		{"dotted", "a.b.c = x", nil, map[string]any{"a": map[string]any{"b": map[string]any{"c": "x"}}}},
		{"quoted key keeps dot", `"akka.remote" = 1`, nil, map[string]any{"akka.remote": int64(1)}},
		{"mixed quoted path", `a."b.c".d = 1`, nil, map[string]any{"a": map[string]any{"b.c": map[string]any{"d": int64(1)}}}},
		{"braced root", "{ a = 1, b = 2 }", nil, map[string]any{"a": int64(1), "b": int64(2)}},
		{"list multi-line trailing comma", "a = [\n 1,\n 2\n 3,\n]", nil, map[string]any{"a": []any{int64(1), int64(2), int64(3)}}},
		{"empty list", "a = []", nil, map[string]any{"a": []any{}}},
		{"comments", "# c\na = 1 // c\n// c\nb = 2 # c", nil, map[string]any{"a": int64(1), "b": int64(2)}},
		{"quoted escapes", `a = "x\"y\\z\n\u00e9\t"`, nil, map[string]any{"a": "x\"y\\z\né\t"}},
		{"surrogate pair", `a = "\ud83d\ude00"`, nil, map[string]any{"a": "😀"}},
		{"triple quoted", "a = \"\"\"line1\n\"q\" \\n line2\"\"\"", nil, map[string]any{"a": "line1\n\"q\" \\n line2"}},
		{"triple quoted extra quotes", `a = """x"""""`, nil, map[string]any{"a": `x""`}},
		{"unquoted url", "a = file:///mnt/nfs/gear", nil, map[string]any{"a": "file:///mnt/nfs/gear"}},
		{"unquoted host:port list", "a = [node1:3000, node2:3000]", nil, map[string]any{"a": []any{"node1:3000", "node2:3000"}}},
		{"numbers", "a = 10\nb = -3\nc = 1e3\nd = 0.5\ne = 99999999999999999999", nil, map[string]any{"a": int64(10), "b": int64(-3), "c": 1000.0, "d": 0.5, "e": 1e20}},
		{"not numbers", "a = 10s\nb = 01\nc = 1.2.3", nil, map[string]any{"a": "10s", "b": "01", "c": "1.2.3"}},
		{"booleans and on/off", "a = true\nb = false\nc = on\nd = off\ne = yes\nf = no", nil, map[string]any{"a": true, "b": false, "c": "on", "d": "off", "e": "yes", "f": "no"}},
		{"null", "a = null", nil, map[string]any{"a": nil}},
		{"duration concatenation", "timeout = 300 s", nil, map[string]any{"timeout": "300 s"}},
		{"concatenation keeps inner spaces", "a = foo   bar  # c", nil, map[string]any{"a": "foo   bar"}},
		{"concatenation quoted", `a = "x" y "z"`, nil, map[string]any{"a": "x y z"}},
		{"later scalar wins", "a = 1\na = 2", nil, map[string]any{"a": int64(2)}},
		{"objects merge", "a { x = 1, y = 1 }\na { y = 2 }\na.z = 3", nil, map[string]any{"a": map[string]any{"x": int64(1), "y": int64(2), "z": int64(3)}}},
		{"object replaces scalar", "a = 1\na { b = 2 }", nil, map[string]any{"a": map[string]any{"b": int64(2)}}},
		{"scalar replaces object", "a { b = 2 }\na = 1", nil, map[string]any{"a": int64(1)}},
		{"append to missing", "a += 1\na += x", nil, map[string]any{"a": []any{int64(1), "x"}}},
		{"append to list", "a = [1]\na += 2", nil, map[string]any{"a": []any{int64(1), int64(2)}}},
		{"append after self reference copy", "a = [1]\na += 2\na = ${a}\na += 3\nb = [9]\nb += 8", nil, map[string]any{"a": []any{int64(1), int64(2), int64(3)}, "b": []any{int64(9), int64(8)}}},
		{"two objects append to one earlier list", "x.b = [0]\nx = { b += 1 } { b += 2 }", nil, map[string]any{"x": map[string]any{"b": []any{int64(0), int64(2)}}}},
		{"substitution", "a = 5\nb = ${a}", nil, map[string]any{"a": int64(5), "b": int64(5)}},
		{"substitution forward", "b = ${a.x}\na.x = y", nil, map[string]any{"a": map[string]any{"x": "y"}, "b": "y"}},
		{"substitution in string", "h = node1\nu = \"http://\"${h}\":3000\"", nil, map[string]any{"h": "node1", "u": "http://node1:3000"}},
		{"substitution env fallback", "a = ${HOME}", []string{"HOME", "/home/x"}, map[string]any{"a": "/home/x"}},
		{"optional unset drops key", "a = ${?NOPE}\nb = 1", nil, map[string]any{"b": int64(1)}},
		{"optional set", "a = ${?V}", []string{"V", "v"}, map[string]any{"a": "v"}},
		{"optional override keeps earlier", "a = 1\na = ${?NOPE}", nil, map[string]any{"a": int64(1)}},
		{"self reference", "a = [1]\na = ${a} [2]", nil, map[string]any{"a": []any{int64(1), int64(2)}}},
		{"self reference string", "p = /bin\np = ${p}\":/usr/bin\"", nil, map[string]any{"p": "/bin:/usr/bin"}},
		{"self reference nested", "a { p = x }\na { p = ${a.p}y }", nil, map[string]any{"a": map[string]any{"p": "xy"}}},
		{"object substitution merge", "base { x = 1, y = 1 }\nc = ${base} { y = 2 }", nil, map[string]any{"base": map[string]any{"x": int64(1), "y": int64(1)}, "c": map[string]any{"x": int64(1), "y": int64(2)}}},
		{"object then subst merges", "base { x = 1 }\nc { y = 2 }\nc = ${base}", nil, map[string]any{"base": map[string]any{"x": int64(1)}, "c": map[string]any{"x": int64(1), "y": int64(2)}}},
		{"subst then dotted", "base { x = 1 }\nc = ${base}\nc.y = 2", nil, map[string]any{"base": map[string]any{"x": int64(1)}, "c": map[string]any{"x": int64(1), "y": int64(2)}}},
		{"list concatenation", "a = [1] [2]", nil, map[string]any{"a": []any{int64(1), int64(2)}}},
		{"key named include", "include = 5", nil, map[string]any{"include": int64(5)}},
		{"objects in lists", "a = [{x = 1}, {y = [2]}]", nil, map[string]any{"a": []any{map[string]any{"x": int64(1)}, map[string]any{"y": []any{int64(2)}}}}},
		{"base64 value", "k = abc+/d==", nil, map[string]any{"k": "abc+/d=="}},
		{"crlf", "a = 1\r\nb = x\r\n", nil, map[string]any{"a": int64(1), "b": "x"}},
		{"empty", "", nil, map[string]any{}},
		{"empty object", "a {}", nil, map[string]any{"a": map[string]any{}}},
		{"comma separated fields", "a = 1, b = 2,", nil, map[string]any{"a": int64(1), "b": int64(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustParse(t, tt.src, Options{LookupEnv: envOf(tt.env...)})
			if got := d.Map(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestPositionsAndKeys(t *testing.T) {
	src := "gear {\n  cluster { masters = [\"node1\", \"node2:3000\"] }\n}\nserializers = { \"a.b.C\" = \"\" }\nt = 300 s\nt = 5s\n"
	d := mustParse(t, src, Options{})
	wantKeys := []string{"gear.cluster.masters", `serializers."a.b.C"`, "t"}
	if got := d.Keys(); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("keys = %q, want %q", got, wantKeys)
	}
	for _, tc := range []struct {
		key  string
		want string
	}{
		{"gear.cluster.masters", "t.conf:2:23"},
		{`serializers."a.b.C"`, "t.conf:4:27"},
		{"t", "t.conf:6:5"}, // last assignment
	} {
		p, ok := d.Pos(tc.key)
		if !ok || p.String() != tc.want {
			t.Errorf("Pos(%s) = %v, %v; want %s", tc.key, p, ok, tc.want)
		}
	}
	if p, ok := d.ElemPos("gear.cluster.masters", 1); !ok || p.String() != "t.conf:2:33" {
		t.Errorf("ElemPos = %v %v, want t.conf:2:33", p, ok)
	}
	if segs := SplitKey(`serializers."a.b.C"`); !reflect.DeepEqual(segs, []string{"serializers", "a.b.C"}) {
		t.Errorf("SplitKey = %q", segs)
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every error, in order
	}{
		{"missing separator", "a }", []string{`t.conf:1:3: a: expected '=' , ':' or '{' after key "a", found '}'`}},
		{"missing value", "a =\nb = 1", []string{`t.conf:1:4: a: expected a value (string, number, true/false, null, {...}, [...] or ${...}), found newline`}},
		{"unterminated string", "a = \"abc\nb = 1", []string{`t.conf:1:5: a: unterminated string: expected a closing '"' before newline`}},
		{"bad escape", `a = "x\qy"`, []string{`t.conf:1:7: a: invalid escape '\q' in string: valid escapes are \" \\ \/ \b \f \n \r \t \uXXXX`}},
		{"unclosed object", "a {\n b = 1\n", []string{`t.conf:1:3: '{' opened here is never closed: expected '}', found end of file`}},
		{"unclosed list then key", "a = [1, 2\nb = 3\nc = 4", []string{`t.conf:1:5: a: '[' opened here is not closed: expected ']' before "b" on line 2`}},
		{"stray closer", "a = 1\n}\nb = 2", []string{`t.conf:2:1: unexpected '}': expected a key or end of file`}},
		{"garbage after value", "a = [1] x", []string{`t.conf:1:5: a: cannot concatenate a list with a string: objects merge only with objects and lists only with lists (quote the value if it is text, or use += to append to a list)`}},
		{"value after object", "a { b = 1 } c", []string{`t.conf:1:3: a: cannot concatenate an object with a string: objects merge only with objects and lists only with lists (quote the value if it is text, or use += to append to a list)`}},
		{"list separator", "a = [1 ; 2]", nil}, // "1 ; 2" is one unquoted concatenation: valid
		{"double comma in list", "a = [1,,2]", []string{`t.conf:1:8: a: unexpected ',' in list: expected a value or ']'`}},
		{"empty key segment", "a. = 1", []string{`t.conf:1:3: expected a key segment after '.', found ' '`}},
		{"several errors collected", "a }\nb = \"x\nc = 1\nd =", []string{
			`t.conf:1:3: a: expected '=' , ':' or '{' after key "a", found '}'`,
			`t.conf:2:5: b: unterminated string: expected a closing '"' before newline`,
			`t.conf:4:4: d: expected a value (string, number, true/false, null, {...}, [...] or ${...}), found end of file`,
		}},
		{"unset substitution", "a = ${b.c}", []string{`t.conf:1:5: a: ${b.c} is not set: no key b.c in the configuration and no environment variable b.c (use ${?b.c} if it is optional)`}},
		{"cycle", "a = ${b}\nb = ${a}", []string{`t.conf:1:5: a: substitution cycle: the value refers to itself through ${...}`}},
		{"unclosed substitution", "a = ${b", []string{`t.conf:1:8: a: expected '}' to close the substitution ${b, found end of file`}},
		{"url include", `include url("http://x")`, []string{`t.conf:1:9: include url(...) is not supported: use include file("path") or include "path"`}},
		{"missing required include", `include required("nope.conf")`, []string{`t.conf:1:1: required include "nope.conf" not found (looked for nope.conf)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWith([]byte(tt.src), "t.conf", Options{LookupEnv: noEnv, ReadFile: memFS(nil)})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v (%T) is not an ErrorList", err, err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

func memFS(files map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if s, ok := files[filepath.Clean(p)]; ok {
			return []byte(s), nil
		}
		return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
	}
}

func TestIncludes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("sub/common.conf", "x = 1\ny = ${x}\n")
	write("sub/braced.conf", "{ z = 3 }")
	write("noext.conf", "n = 1")
	write("loop.conf", "include \"loop.conf\"")
	main := write("sub/../main.conf", strings.Join([]string{
		`include "sub/common.conf"`,
		`inner { include file("sub/common.conf") }`,
		`include required("sub/braced.conf")`,
		`include "missing.conf"`,
		`include "noext"`,
		`x = 2`,
	}, "\n"))
	d, err := ParseFileWith(main, Options{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"x": int64(2), "y": int64(2), "z": int64(3), "n": int64(1),
		"inner": map[string]any{"x": int64(1), "y": int64(1)},
	}
	if got := d.Map(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
	if p, _ := d.Pos("inner.x"); p.File != filepath.Join(dir, "sub/common.conf") || p.Line != 1 {
		t.Errorf("inner.x pos = %v, want sub/common.conf:1", p)
	}
	if files := d.Files(); len(files) != 5 {
		t.Errorf("files = %q, want main + 4 includes", files)
	}
	_, err = ParseFileWith(filepath.Join(dir, "loop.conf"), Options{})
	if err == nil || !strings.Contains(err.Error(), "include cycle") {
		t.Errorf("loop: err = %v, want include cycle", err)
	}
	if _, err := ParseFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: err = %v, want not a regular file", err)
	}
}

func TestGearpumpFull(t *testing.T) {
	d, err := ParseFileWith("testdata/gearpump-full.conf", Options{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"gearpump.hostname":                                                        "node1",
		"gearpump.cluster.masters":                                                 []any{"node1:3000", "node2:3000", "node3:3000"},
		"gearpump.jarstore.rootpath":                                               "file:///mnt/nfs/gear",
		"gearpump.timeout":                                                         "300 s",
		"gearpump.worker.cgroup.enable":                                            "off",
		"gearpump.master.ui.enabled":                                               "on",
		`gearpump.serializers."io.gearpump.Message"`:                               "",
		`gearpump.serializers."[Ljava.lang.String;"`:                               "",
		"gearpump-master.akka.cluster.auto-down-unreachable-after":                 "15s",
		"gearpump-worker.akka.cluster.roles":                                       []any{"worker"},
		"base.akka.remote.transport-failure-detector.heartbeat-interval":           "2 s",
		"base.akka.actor.default-dispatcher.fork-join-executor.parallelism-factor": 2.0,
		"linux.gearpump.executor.vmargs":                                           "-server -Xss1M -XX:+HeapDumpOnOutOfMemoryError -XX:+UseConcMarkSweepGC -XX:CMSInitiatingOccupancyFraction=80 -XX:+UseParNewGC -XX:NewRatio=3 -Djava.library.path=/usr/lib",
	} {
		got, ok := d.Get(key)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v (%v), want %#v", key, got, ok, want)
		}
	}
	if _, ok := d.Get("base.akka.remote.netty.tcp.hostname"); ok {
		t.Error("${?HOSTNAME} with no environment must leave the key unset")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	d, err := ParseFileWith("testdata/gearpump-full.conf", Options{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	m := d.Map()
	m["weird keys"] = map[string]any{"": "empty", "include": int64(1), "a//b": "x\n\"y\"\x01", "f": 1.0, "neg": -0.5, "nil": nil}
	b, err := Parser{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parser{}.Unmarshal(b)
	if err != nil {
		t.Fatalf("unmarshal marshalled output: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("round trip differs:\n%s", b)
	}
}

func TestKoanfParser(t *testing.T) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(map[string]any{"gear.a": "x"}, "."), nil); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(rawBytes("gear { b = 300 s, c = [1, 2] }"), Parser{}); err != nil {
		t.Fatal(err)
	}
	if k.String("gear.a") != "x" || k.String("gear.b") != "300 s" || len(k.Int64s("gear.c")) != 2 {
		t.Errorf("koanf view: %v", k.All())
	}
	if err := k.Load(rawBytes("gear {"), Parser{}); err == nil {
		t.Error("want a syntax error through koanf")
	}
}

type rawBytes string

func (r rawBytes) ReadBytes() ([]byte, error)    { return []byte(r), nil }
func (r rawBytes) Read() (map[string]any, error) { return nil, errors.New("not supported") }

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.conf")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(string(b))
		}
	}
	for _, s := range []string{"a = ${a}", "a += 1\na = ${a} [2]", `a = """x`, "a { b = [ { c = ${?X} } ] }", "include \"x.conf\"", "{", "a = \"\\ud800\"", "a.\"b\".c = 1 2 3"} {
		f.Add(s)
	}
	files := memFS(map[string]string{"x.conf": "y = 1\ninclude \"x.conf\"", "z.conf": "include required(\"x.conf\")"})
	f.Fuzz(func(t *testing.T, src string) {
		d, err := ParseWith([]byte(src), "f.conf", Options{LookupEnv: envOf("X", "1"), ReadFile: files})
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v is not a non-empty ErrorList", err)
			}
			return
		}
		m := d.Map()
		for _, k := range d.Keys() {
			if _, ok := d.Pos(k); !ok {
				t.Fatalf("key %q has no position", k)
			}
		}
		b, err := Parser{}.Marshal(m)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parser{}.Unmarshal(b)
		if err != nil {
			t.Fatalf("re-parse of marshalled output failed: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip differs:\n%#v\n%#v\n%s", m, back, b)
		}
	})
}
