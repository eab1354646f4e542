package procs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePidFile creates a missing pid dir, writes a new file in one go,
// replaces an existing one (a file left behind), and leaves no temp file.
func TestWritePidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pids", "e1.pid")
	if err := writePidFile(path, 1234, 5678); err != nil {
		t.Fatalf("into a missing pid dir: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "1234\n5678\n" {
		t.Fatalf("pid file = %q", b)
	}
	if err := writePidFile(path, 4321, 8765); err != nil {
		t.Fatalf("over an existing pid file: %v", err)
	}
	if pid, ticks, err := readPidFile(path); err != nil || pid != 4321 || ticks != 8765 {
		t.Fatalf("read back: %d %d %v", pid, ticks, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("pid dir holds %d entries, want only e1.pid", len(ents))
	}
}

// A pid file cut short (the worker died between the create and the write,
// or a reader caught it in between) is detected, even when what is there
// names the live process correctly: Adopt refuses it as stale and removes
// it rather than trusting a partial record.
func TestAdoptTornPidFile(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, content := range []string{
		"",
		fmt.Sprintf("%d", os.Getpid()),
		fmt.Sprintf("%d\n", os.Getpid()),
		fmt.Sprintf("%d\n%d", os.Getpid(), st.startTicks), // no final newline
	} {
		path := filepath.Join(dir, "x.pid")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readPidFile(path); err == nil || !strings.Contains(err.Error(), "torn") {
			t.Errorf("%q: readPidFile err %v, want it rejected as torn", content, err)
		}
		if _, err := Adopt(path); !errors.Is(err, ErrStalePidFile) {
			t.Errorf("%q: Adopt err %v, want ErrStalePidFile", content, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%q: torn pid file not removed", content)
		}
	}
	// The whole record adopts.
	path := filepath.Join(dir, "x.pid")
	if err := writePidFile(path, os.Getpid(), st.startTicks); err != nil {
		t.Fatal(err)
	}
	if _, err := Adopt(path); err != nil {
		t.Fatalf("whole record: %v", err)
	}
}

// openLog creates a missing log dir and a new log; an existing log that
// has outgrown LogMaxSize is rotated before it is opened again (a
// restart), one below it is appended to.
func TestOpenLog(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{ID: "e1", LogDir: filepath.Join(dir, "logs"), LogMaxSize: 10, LogMaxFiles: 2}.withDefaults()
	f, err := openLog(spec)
	if err != nil {
		t.Fatalf("new log in a missing dir: %v", err)
	}
	fmt.Fprint(f, "short\n")
	f.Close()
	if f, err = openLog(spec); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "grown past ten bytes\n")
	f.Close()
	if _, err := os.Stat(spec.LogFile() + ".1"); !os.IsNotExist(err) {
		t.Fatalf("rotated below LogMaxSize: %v", err)
	}
	if f, err = openLog(spec); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "after\n")
	f.Close()
	if b, _ := os.ReadFile(spec.LogFile() + ".1"); string(b) != "short\ngrown past ten bytes\n" {
		t.Errorf("rotated log = %q", b)
	}
	if b, _ := os.ReadFile(spec.LogFile()); string(b) != "after\n" {
		t.Errorf("current log = %q", b)
	}
}
