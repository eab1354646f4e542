package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInspectAgreesWithUnpack builds random archives of directories, files
// and symlinks (fuzzing cannot run on every machine) and checks that the
// CLI's in-memory check (Inspect) refuses exactly the links the worker's
// on-disk check (Unpack) refuses: the CLI must not upload what the workers
// will refuse, nor refuse what they would run.
func TestInspectAgreesWithUnpack(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	parts := []string{"a", "b", "c", ".", ".."}
	randPath := func(max int) string {
		n := 1 + r.IntN(max)
		var segs []string
		for range n {
			segs = append(segs, parts[r.IntN(len(parts))])
		}
		return strings.Join(segs, "/")
	}
	names := []string{"a", "b", "c", "a/a", "a/b", "b/c", "c/a/b"}
	runs, refusedBoth := 0, 0
	for i := range 600 {
		entries := []entry{file(ManifestName, "name = x\nprocesses { p { command = [\"sh\"] } }\n")}
		used := map[string]bool{}
		for range 1 + r.IntN(5) {
			name := names[r.IntN(len(names))]
			if used[name] {
				continue
			}
			used[name] = true
			switch r.IntN(3) {
			case 0:
				entries = append(entries, dirEntry(name+"/"))
			case 1:
				entries = append(entries, file(name, "x"))
			default:
				entries = append(entries, symlinkEntry(name, randPath(4)))
			}
		}
		data := tarGz(t, entries...)
		base := t.TempDir()
		uerr := Unpack(context.Background(), bytes.NewReader(data), KindTarGz, filepath.Join(base, "app"), Limits{})
		p := filepath.Join(base, "b.tar.gz")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, serr := scanTarGz(p, DefaultLimits)
		// An entry written through a link to a directory is created by
		// os.Root's rules, which the in-memory check does not replay: it
		// may refuse such (rare) bundles, but never accept one the worker
		// refuses.
		through := false
		for _, e := range entries {
			for _, l := range entries {
				if l.typ == tar.TypeSymlink && strings.HasPrefix(e.name, l.name+"/") {
					through = true
				}
			}
		}
		switch {
		case uerr == nil && serr != nil && !through:
			t.Errorf("case %d %v: Unpack accepts, Inspect refuses: %v", i, entries[1:], serr)
		case errors.Is(uerr, ErrUnsafeEntry) && strings.Contains(uerr.Error(), "symlink") && !errors.Is(serr, ErrUnsafeEntry):
			t.Errorf("case %d %v: Unpack refuses (%v), Inspect accepts (%v)", i, entries[1:], uerr, serr)
		case uerr == nil:
			runs++
		case serr != nil:
			refusedBoth++
		}
	}
	t.Logf("%d archives accepted by both, %d refused by both", runs, refusedBoth)
}
