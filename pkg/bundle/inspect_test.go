package bundle

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/cluster"
)

const goodConf = `name = "web"
processes.web { command = ["./server", "-port", "${PORT}"], ports = [8080] }
processes.job { command = ["sh", "-c", "echo hi"], restart = never }
`

func TestInspectJar(t *testing.T) {
	mf := "Manifest-Version: 1.0\r\nCreated-By: test\r\nMain-Class: org.apache.gearpump.streaming.examples.wordcou\r\n nt.WordCount\r\n\r\nName: other\r\nMain-Class: not.This\r\n"
	jar := zipBytes(t,
		file("META-INF/MANIFEST.MF", mf),
		file("org/apache/gearpump/streaming/examples/wordcount/WordCount.class", "x"),
		file("org/apache/gearpump/streaming/examples/wordcount/WordCount$Split.class", "x"),
		file("org/apache/gearpump/streaming/examples/wordcount/Sum.class", "x"),
	)
	path := writeTemp(t, "wordcount_2.11-0.8.jar", jar)

	m, kind, err := Inspect(path, "", []string{"-split", "4"})
	if err != nil || kind != KindJar {
		t.Fatalf("Inspect = %v, %v", kind, err)
	}
	want := &Manifest{Name: "wordcount_2-11-0-8", Processes: []cluster.Process{{
		Name: "main", Instances: 1, Restart: cluster.RestartAlways,
		Command: []string{"java", "-cp", "${BUNDLE}", "org.apache.gearpump.streaming.examples.wordcount.WordCount", "-split", "4"},
	}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Inspect = %+v\nwant %+v", m, want)
	}

	m, _, err = Inspect(path, "org.apache.gearpump.streaming.examples.wordcount.Sum", nil)
	if err != nil || m.Processes[0].Command[3] != "org.apache.gearpump.streaming.examples.wordcount.Sum" {
		t.Fatalf("Inspect with -main = %+v, %v", m, err)
	}

	_, _, err = Inspect(path, "com.example.Missing", nil)
	if !errors.Is(err, ErrMainClass) {
		t.Fatalf("missing class = %v", err)
	}
	for _, w := range []string{"com.example.Missing", "com/example/Missing.class", "wordcount.Sum", "wordcount.WordCount"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "$Split") {
		t.Errorf("error lists inner classes: %v", err)
	}

	noMain := writeTemp(t, "lib.jar", zipBytes(t, file("a/B.class", "x")))
	if _, _, err := Inspect(noMain, "", nil); !errors.Is(err, ErrMainClass) || !strings.Contains(err.Error(), "pass -main CLASS") {
		t.Fatalf("jar without Main-Class = %v", err)
	}
	notZip := writeTemp(t, "bad.jar", []byte("not a zip"))
	if _, _, err := Inspect(notZip, "", nil); !errors.Is(err, ErrCorruptArchive) {
		t.Fatalf("corrupt jar = %v", err)
	}
}

func TestInspectArchives(t *testing.T) {
	entries := []entry{file("gear-app.conf", goodConf), exe("server", "#!/bin/sh\n")}
	for _, c := range []struct {
		name string
		data []byte
		kind Kind
	}{
		{"app.tar.gz", tarGz(t, entries...), KindTarGz},
		{"app.tgz", tarGz(t, entries...), KindTarGz},
		{"app.zip", zipBytes(t, entries...), KindZip},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, kind, err := Inspect(writeTemp(t, c.name, c.data), "", []string{"--extra"})
			if err != nil || kind != c.kind {
				t.Fatalf("Inspect = %v, %v", kind, err)
			}
			if m.Name != "web" || len(m.Processes) != 2 || m.Processes[0].Name != "job" {
				t.Fatalf("manifest = %+v", m)
			}
			web, _ := m.Process("web")
			if got := strings.Join(web.Command, " "); got != "./server -port ${PORT} --extra" {
				t.Fatalf("web command = %q", got)
			}
		})
	}
}

func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name      string
		file      string
		data      []byte
		mainClass string
		want      error
		msg       string
	}{
		{"unknown ext", "app.rar", []byte("x"), "", ErrUnknownKind, "supported bundles are .jar"},
		{"missing file", "", nil, "", fs.ErrNotExist, "no such file"},
		{"no manifest", "a.tar.gz", tarGz(t, file("server", "x")), "", ErrNoManifest, "add a gear-app.conf"},
		{"nested manifest", "a.tar.gz", tarGz(t, file("app/gear-app.conf", goodConf)), "", ErrNoManifest, "found app/gear-app.conf"},
		{"zip no manifest", "a.zip", zipBytes(t, file("x", "y")), "", ErrNoManifest, "gear-app.conf"},
		{"manifest symlink", "a.tar.gz", tarGz(t, symlinkEntry("gear-app.conf", "/etc/passwd")), "", ErrUnsafeEntry, "regular file"},
		{"bad manifest", "a.tar.gz", tarGz(t, file("gear-app.conf", "name = a\nprocesses.p { command = [x], instances = -1 }")), "", nil, "a.tar.gz:gear-app.conf:2:42: processes.p.instances: must not be negative"},
		{"command missing", "a.tar.gz", tarGz(t, file("gear-app.conf", goodConf), file("other", "x")), "", nil, `command ./server is not in the bundle (it has gear-app.conf, other)`},
		{"command not executable", "a.tar.gz", tarGz(t, file("gear-app.conf", goodConf), file("server", "x")), "", nil, "not executable"},
		{"main for tar", "a.tar.gz", tarGz(t, file("gear-app.conf", goodConf)), "com.X", nil, "-main only applies to .jar"},
		{"traversal in tar", "a.tar.gz", tarGz(t, file("../x", "y")), "", ErrUnsafeEntry, "path traversal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "missing.jar")
			if c.data != nil {
				path = writeTemp(t, c.file, c.data)
			} else if c.file != "" {
				path = filepath.Join(dir, c.file)
			}
			_, _, err := Inspect(path, c.mainClass, nil)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Inspect = %v; want %v containing %q", err, c.want, c.msg)
			}
		})
	}
}

// InspectTarGz (a .tar.gz read from a stream, as the master checks an
// upload while it arrives) agrees with InspectLimits on the same bytes:
// the same manifest, or the same error.
func TestInspectTarGzAgrees(t *testing.T) {
	good := []entry{file("gear-app.conf", goodConf), exe("server", "#!/bin/sh\n")}
	limits := Limits{MaxExpansion: 50}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"good", tarGz(t, good...)},
		{"no manifest", tarGz(t, file("server", "x"))},
		{"command missing", tarGz(t, file("gear-app.conf", goodConf), file("other", "x"))},
		{"traversal", tarGz(t, append(good, file("../x", "y"))...)},
		{"symlink out", tarGz(t, append(good, symlinkEntry("etc", "/etc"))...)},
		{"bomb", tarGz(t, append(good, file("zeros", strings.Repeat("\x00", 8<<20)))...)},
		{"not gzip", []byte("not gzip at all")},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "app.tar.gz", c.data)
			want, _, werr := InspectLimits(path, "", []string{"-x"}, limits)
			got, gerr := InspectTarGz(bytes.NewReader(c.data), path, []string{"-x"}, limits)
			if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
				t.Fatalf("InspectTarGz error %v, InspectLimits error %v", gerr, werr)
			}
			if werr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("InspectTarGz = %+v, InspectLimits = %+v", got, want)
			}
		})
	}
}
