package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// closedPort returns host:port on ip where nothing listens.
func closedPort(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// With no master up, every command that talks to the masters fails at
// once (refused connections and DNS errors are not waited for), names
// every address it tried and says where the list came from.
func TestCLIFailsFastWithNoMaster(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	a, b := closedPort(t, "127.0.0.1"), closedPort(t, "127.0.0.2")
	conf := filepath.Join(c.dir, "nomaster.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("gear.cluster.masters = [%q, %q]\n", a, b)), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"gear.conf", nil, []string{"-conf", conf, "app", "list"}, []string{a, b, "connection refused", "gear.cluster.masters at " + conf}},
		{"gear.conf, workers", nil, []string{"-conf", conf, "workers"}, []string{a, b, conf}},
		{"gear.conf, app info", nil, []string{"-conf", conf, "app", "info", "7"}, []string{a, b, conf}},
		{"gear.conf, masters", nil, []string{"-conf", conf, "masters"}, []string{a, b, conf}},
		{"-master flag", nil, []string{"-conf", conf, "-master", a + ",nonexistent.invalid:3000", "app", "list"}, []string{a, "nonexistent.invalid:3000", "no such host", "-master flag"}},
		{"GEAR_MASTERS", []string{"GEAR_MASTERS=nonexistent.invalid:3000"}, []string{"-conf", conf, "jarstore", "ls"}, []string{"nonexistent.invalid:3000", "no such host", "env GEAR_MASTERS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.env = tc.env
			start := time.Now()
			out, errOut, code := c.gear(tc.args...)
			took := time.Since(start)
			t.Logf("gear %s: %s\n%s", strings.Join(tc.args, " "), took, errOut)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			for _, w := range append(tc.want, "no master reachable") {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not name %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(errOut, "waiting for a leader") {
				t.Errorf("waited for a leader although nothing listens:\n%s", errOut)
			}
			// The target is < 1 s; the bound is loose for a loaded
			// machine (before the fix this took over 10 s).
			if took > 3*time.Second {
				t.Errorf("took %s to fail, want well under 1 s", took)
			}
		})
	}
}
