package test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Gearpump's shipped conf/gear.conf and geardefault.conf, unchanged, pass
// `gear config check` and start a master. Their jarstore.rootpath
// "jarstore/" is a directory relative to where the master was started:
// the master creates it there, says so in `config show`, and warns that it
// does not survive the loss of that master.
func TestGearpumpConfFilesUnchanged(t *testing.T) {
	for _, name := range []string{"gear.conf", "geardefault.conf"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			src, err := os.ReadFile(filepath.Join(repoRoot, "pkg/config/testdata/gearpump", name))
			if err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(dir, name)
			if err := os.WriteFile(conf, src, 0o644); err != nil {
				t.Fatal(err)
			}
			c := &testCluster{t: t, dir: dir, conf: conf, procs: map[string]*proc{}, cwd: dir}
			t.Cleanup(c.stopAll)
			out := c.mustGear("config", "check", "-conf", conf)
			if !strings.Contains(out, ": ok") {
				t.Fatalf("config check: %q", out)
			}
			show := c.mustGear("config", "show", "-conf", conf)
			// config show runs in the test's directory, the master in dir.
			wd, _ := os.Getwd()
			if want := `gear.jarstore.rootpath = "` + filepath.Join(wd, "jarstore") + `"`; !strings.Contains(show, want) {
				t.Errorf("config show does not print the resolved rootpath %s:\n%s", want, show)
			}
			// gear.conf lists 127.0.0.1:3000, so its master takes that
			// port; geardefault.conf lists none (a group of one).
			port := 3000
			var args []string
			if name == "geardefault.conf" {
				port = freePort(t, "127.0.0.1")
				args = []string{"-port", strconv.Itoa(port)}
			} else if ln, err := net.Listen("tcp", "127.0.0.1:3000"); err != nil {
				t.Fatalf("Gearpump's gear.conf lists 127.0.0.1:3000, which is busy here: %v", err)
			} else {
				ln.Close()
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			c.masters = []string{addr}
			p := c.start("master0", append([]string{"master", "-datadir", filepath.Join(dir, "data")}, args...)...)
			waitFor(t, 30*time.Second, "the master to lead", func() bool {
				out, _, code := c.gear("-master", addr, "masters", "-json")
				return code == 0 && strings.Contains(out, `"state": "leader"`)
			})
			if fi, err := os.Stat(filepath.Join(dir, "jarstore")); err != nil || !fi.IsDir() {
				t.Errorf("jarstore/ was not created in the master's working directory: %v", err)
			}
			waitFor(t, 10*time.Second, "the warning about a master-local store", func() bool {
				return strings.Contains(readFile(t, p.log), "do not survive the loss of this master")
			})
		})
	}
}
