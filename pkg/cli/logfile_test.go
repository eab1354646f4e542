package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/config"
)

// TestDaemonLogFile: gear.log.file receives the daemon's log, rotated at
// gear.log.max-size with at most gear.log.max-backups old files; with
// gear.log.stderr = false nothing goes to stderr.
func TestDaemonLogFile(t *testing.T) {
	for _, toStderr := range []bool{false, true} {
		dir := t.TempDir()
		var stderr bytes.Buffer
		env := Env{Stderr: &stderr, Getenv: func(string) string { return "" }, Environ: os.Environ}
		cfg := config.Default()
		cfg.Log.File = filepath.Join(dir, "logs", "master.log")
		cfg.Log.Format = "json"
		cfg.Log.Stderr = toStderr
		cfg.Log.MaxSize = 1 << 20
		cfg.Log.MaxBackups = 2
		log, closeLog, err := daemonLogger(env, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		pad := strings.Repeat("x", 1000)
		for i := range 4000 { // ~4 MB: three rotations
			log.Info("line", "i", i, "pad", pad)
		}
		if err := closeLog(); err != nil {
			t.Fatal(err)
		}
		// lumberjack removes old backups in the background: poll.
		var names []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ents, _ := os.ReadDir(filepath.Join(dir, "logs"))
			names = names[:0]
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if len(names) == 3 || time.Now().After(deadline) {
				break
			}
		}
		if len(names) != 3 { // master.log and two backups
			t.Errorf("stderr=%v: log dir holds %v, want master.log and 2 rotated files", toStderr, names)
		}
		b, err := os.ReadFile(cfg.Log.File)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var last map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["i"] != float64(3999) {
			t.Errorf("last line of the current file: %v %v", last, err)
		}
		if got := stderr.Len() > 0; got != toStderr {
			t.Errorf("gear.log.stderr = %v but stderr got %d bytes", toStderr, stderr.Len())
		}
	}
}

// TestDaemonLogFileUnwritable: a log file that cannot be created stops the
// daemon with an error naming the key.
func TestDaemonLogFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Log.File = filepath.Join(blocker, "sub", "master.log")
	_, _, err := daemonLogger(Env{Stderr: os.Stderr, Getenv: func(string) string { return "" }}, &cfg)
	if err == nil || !strings.Contains(err.Error(), "gear.log.file") {
		t.Fatalf("err = %v, want one naming gear.log.file", err)
	}
}
