package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkWorkDir is the per-executor cost of the working directory of a
// one-file bundle (the scale benchmark's manifest only).
func BenchmarkWorkDir(b *testing.B) {
	data := b.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "run"), 0o755); err != nil {
		b.Fatal(err)
	}
	bundle := filepath.Join(b.TempDir(), "b.d")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "gear-app.conf"), []byte("name = \"sleeper\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := readOnlyTree(bundle); err != nil {
		b.Fatal(err)
	}
	w := &Worker{opts: Options{DataDir: data}}
	for i := 0; b.Loop(); i++ {
		if _, err := w.workDir("1.sleep."+strconv.Itoa(i), bundle, nil); err != nil {
			b.Fatal(err)
		}
	}
}
