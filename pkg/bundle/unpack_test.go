package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// leftovers lists what is in base besides the expected destination name.
func leftovers(t *testing.T, base, except string) []string {
	t.Helper()
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != except {
			out = append(out, e.Name())
		}
	}
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnpackTarGz(t *testing.T) {
	data := tarGz(t,
		dirEntry("./"),
		file("./gear-app.conf", "name = a"),
		exe("bin/server", "#!/bin/sh\necho hi\n"),
		entry{name: "bin/setuid", body: "x", typ: tar.TypeReg, mode: 0o4755},
		dirEntry("lib/"),
		file("lib/libfoo.so.1", "ELF"),
		symlinkEntry("lib/libfoo.so", "libfoo.so.1"),
		symlinkEntry("bin/lib", "../lib"),
		hardlinkEntry("lib/copy.so", "lib/libfoo.so.1"),
		file("dup.txt", "first"),
		file("dup.txt", "second"),
		file("deep/a/b/c.txt", "implicit parents"),
	)
	base := t.TempDir()
	dest := filepath.Join(base, "app")
	if err := Unpack(context.Background(), bytes.NewReader(data), KindTarGz, dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"gear-app.conf":       "name = a",
		"bin/server":          "#!/bin/sh\necho hi\n",
		"lib/libfoo.so":       "ELF",
		"bin/lib/libfoo.so":   "ELF",
		"lib/copy.so":         "ELF",
		"dup.txt":             "second",
		"deep/a/b/c.txt":      "implicit parents",
		"bin/lib/libfoo.so.1": "ELF",
	}
	for p, want := range checks {
		if got := readFile(t, filepath.Join(dest, p)); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	fi, err := os.Stat(filepath.Join(dest, "bin/server"))
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/server lost its execute bit: %v %v", fi.Mode(), err)
	}
	fi, err = os.Stat(filepath.Join(dest, "bin/setuid"))
	if err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("setuid bit kept: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("dest mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if l := leftovers(t, base, "app"); len(l) != 0 {
		t.Errorf("leftovers next to dest: %v", l)
	}
}

func TestUnpackZip(t *testing.T) {
	data := zipBytes(t,
		file("gear-app.conf", "name = z"),
		exe("run.sh", "#!/bin/sh\n"),
		dirEntry("conf/"),
		file("conf/app.properties", "k=v"),
		symlinkEntry("current.properties", "conf/app.properties"),
	)
	for _, mode := range []string{"stream", "file"} {
		t.Run(mode, func(t *testing.T) {
			base := t.TempDir()
			dest := filepath.Join(base, "app")
			var src io.Reader = bytes.NewReader(data)
			if mode == "file" {
				f, err := os.Open(writeTemp(t, "b.zip", data))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				src = f
			}
			if err := Unpack(context.Background(), src, KindZip, dest, Limits{}); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(dest, "current.properties")); got != "k=v" {
				t.Errorf("symlinked file = %q", got)
			}
			if fi, err := os.Stat(filepath.Join(dest, "run.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
				t.Errorf("run.sh mode %v, %v", fi.Mode(), err)
			}
			if l := leftovers(t, base, "app"); len(l) != 0 {
				t.Errorf("leftovers (spool or temp dirs): %v", l)
			}
		})
	}
}

func TestUnpackJar(t *testing.T) {
	jar := zipBytes(t, file("com/x/Main.class", "cafebabe"))
	dest := filepath.Join(t.TempDir(), "app")
	if err := Unpack(context.Background(), bytes.NewReader(jar), KindJar, dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, JarFileName)); got != string(jar) {
		t.Fatal("bundle.jar differs from the jar")
	}
	small := Limits{MaxBytes: 10}
	dest2 := filepath.Join(t.TempDir(), "app")
	if err := Unpack(context.Background(), bytes.NewReader(jar), KindJar, dest2, small); !errors.Is(err, ErrLimit) {
		t.Fatalf("jar over MaxBytes = %v, want ErrLimit", err)
	}
}

func TestUnpackRejects(t *testing.T) {
	bomb := tarGz(t, file("zeros", strings.Repeat("\x00", 4<<20)))
	var many []entry
	for i := range 20 {
		many = append(many, file("f"+strings.Repeat("x", i), "x"))
	}
	cases := []struct {
		name   string
		kind   Kind
		data   []byte
		limits Limits
		want   error
		msg    string
	}{
		{"dotdot", KindTarGz, tarGz(t, file("../evil", "x")), Limits{}, ErrUnsafeEntry, `".." component`},
		{"nested dotdot", KindTarGz, tarGz(t, file("a/../../evil", "x")), Limits{}, ErrUnsafeEntry, "path traversal"},
		{"absolute", KindTarGz, tarGz(t, file("/etc/evil", "x")), Limits{}, ErrUnsafeEntry, "absolute path"},
		{"backslash", KindTarGz, tarGz(t, file(`..\evil`, "x")), Limits{}, ErrUnsafeEntry, "backslash"},
		{"symlink absolute", KindTarGz, tarGz(t, symlinkEntry("etc", "/etc")), Limits{}, ErrUnsafeEntry, "absolute path"},
		{"symlink up", KindTarGz, tarGz(t, symlinkEntry("a/up", "../../..")), Limits{}, ErrUnsafeEntry, "outside the bundle"},
		{"symlink then write through", KindTarGz, tarGz(t, symlinkEntry("d", "/tmp"), file("d/evil", "x")), Limits{}, ErrUnsafeEntry, "outside"},
		{"symlink chain escape", KindTarGz, tarGz(t, dirEntry("a/"), symlinkEntry("a/s", "."), symlinkEntry("a/l", "s/../../x")), Limits{}, ErrUnsafeEntry, "resolve"},
		{"dangling symlink", KindTarGz, tarGz(t, symlinkEntry("nothing", "missing")), Limits{}, ErrUnsafeEntry, "dangling"},
		{"hardlink outside", KindTarGz, tarGz(t, hardlinkEntry("h", "../../etc/passwd")), Limits{}, ErrUnsafeEntry, "hard link"},
		{"hardlink absolute", KindTarGz, tarGz(t, hardlinkEntry("h", "/etc/passwd")), Limits{}, ErrUnsafeEntry, "hard link"},
		{"hardlink missing", KindTarGz, tarGz(t, hardlinkEntry("h", "nope")), Limits{}, ErrUnsafeEntry, "not an earlier regular file"},
		{"char device", KindTarGz, tarGz(t, entry{name: "null", typ: tar.TypeChar, mode: 0o666}), Limits{}, ErrUnsafeEntry, "device file"},
		{"fifo", KindTarGz, tarGz(t, entry{name: "pipe", typ: tar.TypeFifo, mode: 0o666}), Limits{}, ErrUnsafeEntry, "FIFO"},
		{"file over dir", KindTarGz, tarGz(t, dirEntry("d/"), file("d", "x")), Limits{}, ErrUnsafeEntry, "both a directory and a file"},
		{"gzip bomb", KindTarGz, bomb, Limits{MaxBytes: 1 << 20}, ErrLimit, "exceeds 1048576 bytes"},
		{"too many files", KindTarGz, tarGz(t, many...), Limits{MaxFiles: 10}, ErrLimit, "more than 10 entries"},
		{"not gzip", KindTarGz, []byte("PK\x03\x04 not gzip"), Limits{}, ErrCorruptArchive, "not gzip"},
		{"truncated tar", KindTarGz, gz(t, tarBytes(t, file("a", strings.Repeat("y", 5000)))[:1200]), Limits{}, ErrCorruptArchive, ""},
		{"zip slip", KindZip, zipBytes(t, file("../../evil", "x")), Limits{}, ErrUnsafeEntry, `".." component`},
		{"zip absolute", KindZip, zipBytes(t, file("/evil", "x")), Limits{}, ErrUnsafeEntry, "absolute"},
		{"zip symlink out", KindZip, zipBytes(t, symlinkEntry("l", "../x")), Limits{}, ErrUnsafeEntry, "outside"},
		{"zip device", KindZip, zipBytes(t, entry{name: "dev", typ: tar.TypeChar}), Limits{}, ErrUnsafeEntry, "device"},
		{"zip bomb", KindZip, zipBytes(t, file("zeros", strings.Repeat("\x00", 4<<20))), Limits{MaxBytes: 1 << 20}, ErrLimit, "exceeds"},
		{"zip too many", KindZip, zipBytes(t, many...), Limits{MaxFiles: 5}, ErrLimit, "more than 5"},
		{"not zip", KindZip, []byte("just text"), Limits{}, ErrCorruptArchive, "not a zip"},
		{"unknown kind", KindUnknown, []byte("x"), Limits{}, ErrUnknownKind, ".tar.gz"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			dest := filepath.Join(base, "app")
			err := Unpack(context.Background(), bytes.NewReader(c.data), c.kind, dest, c.limits)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Unpack = %v; want %v containing %q", err, c.want, c.msg)
			}
			if l := leftovers(t, base, ""); len(l) != 0 {
				t.Fatalf("a failed Unpack left %v behind", l)
			}
		})
	}
}

func TestUnpackDestinationExists(t *testing.T) {
	dest := t.TempDir()
	err := Unpack(context.Background(), bytes.NewReader(tarGz(t, file("a", "b"))), KindTarGz, dest, Limits{})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Unpack into existing dir = %v", err)
	}
}

func TestUnpackCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	base := t.TempDir()
	err := Unpack(ctx, bytes.NewReader(tarGz(t, file("a", "b"))), KindTarGz, filepath.Join(base, "app"), Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Unpack with cancelled ctx = %v", err)
	}
	if l := leftovers(t, base, ""); len(l) != 0 {
		t.Fatalf("left %v behind", l)
	}
}
