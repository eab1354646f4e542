package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/cluster"
)

// checkContained fails if anything exists in base other than dest (and, if
// dest exists, if any symlink under it resolves outside dest).
func checkContained(t *testing.T, base, dest string) {
	t.Helper()
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != filepath.Base(dest) && e.Name() != "sentinel" {
			t.Fatalf("Unpack created %q outside the destination", e.Name())
		}
	}
	if b, err := os.ReadFile(filepath.Join(base, "sentinel")); err != nil || string(b) != "keep" {
		t.Fatalf("sentinel next to the destination was changed: %q %v", b, err)
	}
	destReal, err := filepath.EvalSymlinks(dest)
	if err != nil {
		return // nothing unpacked
	}
	_ = filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type()&(os.ModeDevice|os.ModeNamedPipe) != 0 {
			t.Fatalf("device or FIFO %s extracted", p)
		}
		if d.Type()&os.ModeSymlink == 0 {
			return nil
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatalf("dangling symlink %s survived Unpack", p)
		}
		if rel, err := filepath.Rel(destReal, real); err != nil || !(rel == "." || filepath.IsLocal(rel)) {
			t.Fatalf("symlink %s resolves outside: %s", p, real)
		}
		return nil
	})
}

func fuzzUnpack(t *testing.T, kind Kind, data []byte) {
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "sentinel"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(base, "out")
	err := Unpack(context.Background(), bytes.NewReader(data), kind, dest, Limits{MaxFiles: 200, MaxBytes: 8 << 20})
	if err != nil {
		if _, serr := os.Lstat(dest); serr == nil {
			t.Fatalf("failed Unpack (%v) left the destination behind", err)
		}
	}
	checkContained(t, base, dest)
}

func seedTars(t testing.TB) [][]byte {
	return [][]byte{
		tarBytes(t, file("gear-app.conf", goodConf), exe("server", "x"), dirEntry("d/"), file("d/f", "y")),
		tarBytes(t, symlinkEntry("l", "d/f"), dirEntry("d/"), file("d/f", "y"), hardlinkEntry("h", "d/f")),
		tarBytes(t, file("../evil", "x")),
		tarBytes(t, symlinkEntry("d", "."), file("d/x", "y"), symlinkEntry("e", "d/../..")),
		tarBytes(t, entry{name: "dev", typ: tar.TypeChar}),
	}
}

// FuzzUnpackTar feeds arbitrary tar streams (gzipped here, so the fuzzer
// mutates tar structure rather than the gzip envelope) to Unpack: it must
// never panic and never write outside its destination.
func FuzzUnpackTar(f *testing.F) {
	for _, s := range seedTars(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzUnpack(t, KindTarGz, gz(t, raw))
	})
}

// FuzzUnpackZip feeds arbitrary zip files to Unpack.
func FuzzUnpackZip(f *testing.F) {
	f.Add(zipBytes(f, file("gear-app.conf", goodConf), exe("server", "x")))
	f.Add(zipBytes(f, symlinkEntry("l", "a"), file("a", "b"), dirEntry("d/")))
	f.Add(zipBytes(f, file("../../x", "y")))
	f.Add(zipBytes(f, symlinkEntry("l", "../x")))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzUnpack(t, KindZip, raw)
	})
}

// FuzzParseManifest: never panic; whatever parses satisfies the invariants
// the worker relies on.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(fullManifest))
	f.Add([]byte(goodConf))
	f.Add([]byte("name = a\nprocesses.p { command = [x], instances = -1 }"))
	f.Add([]byte(`name = a, processes { p { command = ["a"], health { http = "/", port = 1 } } }`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data, "gear-app.conf")
		if err != nil {
			if !strings.Contains(err.Error(), "gear-app.conf") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if cluster.ValidName(m.Name) != nil || len(m.Processes) == 0 {
			t.Fatalf("accepted manifest with bad name or no processes: %+v", m)
		}
		if !slices.IsSortedFunc(m.Processes, func(a, b cluster.Process) int { return strings.Compare(a.Name, b.Name) }) {
			t.Fatalf("processes not sorted: %+v", m.Processes)
		}
		// What the parser accepts, the one validation the CLI and the
		// master run accepts too.
		if err := cluster.ValidateProcesses(m.Processes); err != nil {
			t.Fatalf("parser accepted processes that ValidateProcesses refuses: %v\n%+v", err, m.Processes)
		}
		for _, p := range m.Processes {
			if p.Restart == "" {
				t.Fatalf("parser left the restart policy empty: %+v", p)
			}
		}
	})
}
