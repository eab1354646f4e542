package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gear-run/gear/pkg/cluster"
)

func TestAllowedEnv(t *testing.T) {
	env := allowedEnv([]string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "TMPDIR=/tmp",
		"GEAR_TOKEN=secret", "GEAR_GOSSIP_KEY=k", "GEAR_CONF=/etc/gear.conf", "AWS_SECRET_ACCESS_KEY=x", "SSH_AUTH_SOCK=/run/s", "LD_PRELOAD=/x.so", "=weird", "NOEQUALS"})
	want := map[string]string{"PATH": "/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC", "TMPDIR": "/tmp"}
	if len(env) != len(want) {
		t.Errorf("got %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

// A process group that names a user the worker does not allow is refused
// with a final error naming gear.worker.allowed-users.
func TestExecutorUserNotAllowed(t *testing.T) {
	w := &Worker{opts: Options{AllowedUsers: []string{"app"}}}
	_, err := w.executorUser(cluster.Process{Name: "web", User: "root"})
	if !errors.Is(err, errFinal) || !strings.Contains(err.Error(), "gear.worker.allowed-users: app") {
		t.Fatalf("err = %v", err)
	}
	if u, err := w.executorUser(cluster.Process{Name: "web"}); u != nil || err != nil {
		t.Fatalf("no user anywhere: %v %v, want the worker's own", u, err)
	}
}

// The working directory is a private copy: writes to it (also through an
// O_TRUNC open of a bundle file) leave the shared, read-only bundle alone;
// it is kept when asked for again and removed by removeWorkDir.
func TestWorkDirIsPrivateCopy(t *testing.T) {
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "b.d")
	if err := os.MkdirAll(filepath.Join(bundle, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "conf", "app.conf"), []byte("shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("conf/app.conf", filepath.Join(bundle, "link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := readOnlyTree(bundle); err != nil {
		t.Fatal(err)
	}
	w := &Worker{opts: Options{DataDir: data}}
	d1, err := w.workDir("1.web.0", bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := w.workDir("1.web.1", bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d1, "conf", "app.conf"), []byte("mine\n"), 0o644); err != nil {
		t.Fatalf("write into the executor's own copy: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d1, "new.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(bundle, "conf", "app.conf"): "shared\n",
		filepath.Join(d2, "conf", "app.conf"):     "shared\n",
		filepath.Join(d2, "link.conf"):            "shared\n",
		filepath.Join(d1, "link.conf"):            "mine\n", // the link resolves inside the copy
	} {
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			t.Errorf("%s = %q %v, want %q", path, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(d2, "new.txt")); err == nil {
		t.Error("new.txt reached the other instance")
	}
	if again, err := w.workDir("1.web.0", bundle, nil); err != nil || again != d1 {
		t.Fatalf("asked again: %s %v", again, err)
	}
	if b, _ := os.ReadFile(filepath.Join(d1, "new.txt")); string(b) != "x" {
		t.Error("the working directory was not kept")
	}
	if err := removeTree(bundle); err != nil {
		t.Fatalf("remove the read-only bundle: %v", err)
	}
}

// The copy keeps what the bundle's files are (an executable stays
// executable, and becomes writable by its owner), copies files too big to
// keep in memory from the bundle, and leaves nothing but the working
// directories in run/. A jar bundle's (no unpacked tree) is an empty
// directory of mode 0755, made the same way again after it was removed.
func TestWorkDirCopy(t *testing.T) {
	data := t.TempDir()
	run := filepath.Join(data, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "b.d")
	if err := os.MkdirAll(filepath.Join(bundle, "lib", "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", treeFileMax/16+1) // over treeFileMax: copied, not kept
	files := map[string]struct {
		content string
		mode    os.FileMode
	}{
		"server":          {"#!/bin/sh\necho hi\n", 0o755},
		"empty":           {"", 0o644},
		"lib/big.bin":     {big, 0o644},
		"lib/deep/x.conf": {"x = 1\n", 0o600},
		"gear-app.conf":   {"name = \"b\"\n", 0o644},
	}
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(bundle, name), []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := readOnlyTree(bundle); err != nil {
		t.Fatal(err)
	}
	w := &Worker{opts: Options{DataDir: data}}
	for _, id := range []string{"1.web.0", "1.web.1"} { // the second from the kept tree
		dir, err := w.workDir(id, bundle, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, f := range files {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil || string(b) != f.content {
				t.Errorf("%s: %s = %d bytes %v, want %d", id, name, len(b), err, len(f.content))
				continue
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != f.mode|0o200 {
				t.Errorf("%s: %s mode %v, want %v", id, name, fi.Mode().Perm(), f.mode|0o200)
			}
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: working directory %v %v, want mode 0755", id, fi.Mode(), err)
		}
	}
	jar, err := w.workDir("2.jar.0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(jar); err != nil || len(ents) != 0 {
		t.Fatalf("jar working directory: %v %v, want empty", ents, err)
	}
	if fi, _ := os.Stat(jar); fi.Mode().Perm() != 0o755 {
		t.Errorf("jar working directory mode %v, want 0755", fi.Mode().Perm())
	}
	w.removeWorkDir("2.jar.0")
	if _, err := w.workDir("2.jar.0", "", nil); err != nil {
		t.Fatalf("again after removal: %v", err)
	}
	ents, _ := os.ReadDir(run)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "1.web.0 1.web.1 2.jar.0" {
		t.Errorf("run/ holds %v, want only the three working directories", names)
	}
}

// A copy that fails half way (here: the bundle's large file is gone, so
// it cannot be copied) leaves neither the working directory nor its
// temporary behind, and the next attempt copies the bundle as it is then.
func TestWorkDirFailedCopyLeavesNothing(t *testing.T) {
	data := t.TempDir()
	run := filepath.Join(data, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "b.d")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(bundle, "big.bin")
	if err := os.WriteFile(big, make([]byte, treeFileMax+1), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &Worker{opts: Options{DataDir: data}}
	if _, err := w.workDir("1.web.0", bundle, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(big); err != nil {
		t.Fatal(err)
	}
	if _, err := w.workDir("1.web.1", bundle, nil); err == nil {
		t.Fatal("copied a file that is gone")
	}
	if ents, _ := os.ReadDir(run); len(ents) != 1 || ents[0].Name() != "1.web.0" {
		t.Fatalf("run/ after a failed copy: %v, want only 1.web.0", ents)
	}
	if err := os.WriteFile(big, []byte("back"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := w.workDir("1.web.1", bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "big.bin")); string(b) != "back" {
		t.Errorf("big.bin = %q, want the bundle's as it is now", b)
	}
}

// Executors of one bundle start together (the worker's start slots): their
// working directories are made at once from one kept tree, each complete.
func TestWorkDirConcurrent(t *testing.T) {
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "b.d")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "gear-app.conf"), []byte("name = \"b\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &Worker{opts: Options{DataDir: data}}
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			dir, err := w.workDir("1.web."+strconv.Itoa(i), bundle, nil)
			if err == nil {
				var b []byte
				if b, err = os.ReadFile(filepath.Join(dir, "gear-app.conf")); err == nil && string(b) != "name = \"b\"\n" {
					err = fmt.Errorf("%s: gear-app.conf = %q", dir, b)
				}
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
