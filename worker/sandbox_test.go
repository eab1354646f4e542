package worker

import (
	"errors"
	"os"
	"path/filepath"
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
