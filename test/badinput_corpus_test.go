package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// The bad input corpus: configs, bundles, API requests and heartbeats that
// are wrong in every way we could think of. Each gets a clear error and
// leaves the cluster's state (apps, workers, stored bundles) as it was.
func TestBadInputCorpus(t *testing.T) {
	const token = "corpus-token"
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: "gear.auth.token = \"" + token + "\"\ngear.jarstore.max-bundle-size = 10MB\n"})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() != "" })
	waitFor(t, 20*time.Second, "the worker to register", func() bool { return len(c.aliveWorkers()) == 1 })
	id := c.submit(example("hello.tar.gz"), "-executors", "0")
	// The state compared before and after the bad input must be settled:
	// the app's executors starting meanwhile is not the bad input's doing.
	waitFor(t, 30*time.Second, "the app to run", func() bool {
		a := c.app(id)
		return a != nil && a.State == cluster.AppRunning
	})
	worker := c.aliveWorkers()[0]
	master := c.masters[0]
	dir := t.TempDir()

	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tarGz := func(name string, hdrs ...tar.Header) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		tw := tar.NewWriter(zw)
		for _, h := range hdrs {
			body := []byte(h.Linkname)
			if h.Typeflag == tar.TypeSymlink {
				body = nil
			} else {
				h.Linkname = ""
			}
			h.Size = int64(len(body))
			if h.Mode == 0 {
				h.Mode = 0o755
			}
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			_, _ = tw.Write(body)
		}
		tw.Close()
		zw.Close()
		return write(name, b.Bytes())
	}
	// tar.Header.Linkname carries a regular file's content in tarGz.
	manifest := tar.Header{Name: "gear-app.conf", Typeflag: tar.TypeReg, Linkname: "name = x\nprocesses { main { command = [\"./run\"] } }\n"}
	run := tar.Header{Name: "run", Typeflag: tar.TypeReg, Linkname: "#!/bin/sh\nsleep 100\n"}
	var bomb bytes.Buffer
	if err := writeBombTarGz(&bomb, 64<<20); err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 11<<20) // incompressible: the archive is over 10MB
	_, _ = rand.New(rand.NewSource(1)).Read(noise)
	huge := make([]byte, 2<<20)
	for i := range huge {
		huge[i] = byte('a' + i%26)
	}

	// Configs, checked with `gear config check`.
	confs := []struct {
		name    string
		content string
		want    []string
	}{
		{"truncated", "gear.cluster.masters = [\"127.0.0.1:3000\"\n", []string{"truncated.conf:1:", "never closed"}},
		{"binary garbage", "\x00\x9f\xd9_\xad\x01garbage\xff\xfe = \x13\n\"", []string{"binary garbage.conf:"}},
		{"wrong type", "gear.failover.timeout = \"abc\"\n", []string{"wrong type.conf:1:", "not a duration"}},
		{"wrong type list", "gear.cluster.masters = 5\n", []string{"wrong type list.conf:1:", "gear.cluster.masters"}},
		{"include loop", "include \"include loop.conf\"\n", []string{"include cycle"}},
	}
	for _, tc := range confs {
		p := write(tc.name+".conf", []byte(tc.content))
		t.Run("config/"+tc.name, func(t *testing.T) {
			_, errOut, code := c.gear("config", "check", "-conf", p)
			if code == 0 {
				t.Fatalf("config check passed a %s config", tc.name)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
	// Accepted on purpose, with a warning where it helps: an unknown key
	// (a typo) warns with a suggestion; a huge file of comments is read.
	t.Run("config/unknown key warns", func(t *testing.T) {
		p := write("unknown.conf", []byte("gear.failover.timout = 5s\n"))
		_, errOut, _ := c.gear("config", "check", "-conf", p)
		if !strings.Contains(errOut, "unknown key") || !strings.Contains(errOut, "did you mean gear.failover.timeout") {
			t.Fatalf("no warning with a suggestion for a misspelt key: %q", errOut)
		}
	})
	t.Run("config/huge", func(t *testing.T) {
		p := write("huge.conf", append([]byte("gear.log.level = debug\n"), bytes.Repeat([]byte("# padding\n"), 1<<20)...))
		start := time.Now()
		if _, errOut, code := c.gear("config", "check", "-conf", p); code != 0 {
			t.Fatalf("a 10MB config of comments: %s", errOut)
		}
		t.Logf("10MB config checked in %v", time.Since(start).Round(time.Millisecond))
	})

	before := corpusState(t, c)

	// Bundles, through the CLI.
	bundles := []struct {
		name string
		path string
		want []string
	}{
		{"not an archive", write("garbage.tar.gz", []byte("this is not gzip")), []string{"garbage.tar.gz"}},
		{"0 bytes", write("empty.tar.gz", nil), []string{"empty.tar.gz"}},
		{"no gear-app.conf", tarGz("nomanifest.tar.gz", run), []string{"gear-app.conf"}},
		{"bad gear-app.conf", tarGz("badmanifest.tar.gz", tar.Header{Name: "gear-app.conf", Typeflag: tar.TypeReg, Linkname: "processes { main { command = [\n"}, run), []string{"gear-app.conf"}},
		{"zip slip", tarGz("slip.tar.gz", manifest, run, tar.Header{Name: "../../escape", Typeflag: tar.TypeReg, Linkname: "x"}), []string{"escape"}},
		{"symlink out", tarGz("symlink.tar.gz", manifest, run, tar.Header{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"}), []string{"etc"}},
		{"bomb", write("bomb.tar.gz", bomb.Bytes()), []string{"bomb.tar.gz"}},
		{"over the size limit", tarGz("big.tar.gz", manifest, run, tar.Header{Name: "noise", Typeflag: tar.TypeReg, Linkname: string(noise)}), []string{"max-bundle-size"}},
	}
	for _, tc := range bundles {
		t.Run("bundle/"+tc.name, func(t *testing.T) {
			out, errOut, code := c.gear("app", "submit", tc.path, "-quiet")
			if code == 0 {
				t.Fatalf("submit of a bundle with %s succeeded: %s", tc.name, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
			t.Logf("%s: %s", tc.name, firstLine(errOut))
		})
	}

	// API requests, straight over HTTP.
	hb, _ := json.Marshal(cluster.Heartbeat{Worker: cluster.Worker{ID: worker.ID, Addr: "127.0.0.1:9", CPUs: []int{0, 1, 2, 3, 4, 5, 6, 7}, BootID: "forged"}, Secret: "wrong-secret"})
	reqs := []struct {
		name, method, path, body, token string
		status                          int
		want                            string
	}{
		{"malformed JSON", "POST", "/api/v1/apps", "{", token, 400, "request body"},
		{"wrong types", "POST", "/api/v1/apps", `{"name": 5, "processes": "x"}`, token, 400, "name"},
		{"huge body", "POST", "/api/v1/apps/" + id + "/scale", `{"instances": 1, "pad": "` + strings.Repeat(string(huge), 8) + `"}`, token, 413, "limit"},
		{"unknown app", "GET", "/api/v1/apps/99999", "", token, 404, "99999"},
		{"kill unknown app", "POST", "/api/v1/apps/99999/kill", "", token, 404, "99999"},
		{"negative scale", "POST", "/api/v1/apps/" + id + "/scale", `{"instances": -1}`, token, 400, "instances must be"},
		{"wrong token", "GET", "/api/v1/apps", "", "not-the-token", 401, "token"},
		{"missing token", "POST", "/api/v1/apps/" + id + "/kill", "", "", 401, "token"},
		{"heartbeat with a wrong secret", "POST", "/api/v1/workers/heartbeat", string(hb), token, 403, "another secret"},
	}
	for _, tc := range reqs {
		t.Run("api/"+tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, "http://"+master+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%s %s: %d %s, want %d mentioning %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}

	after := corpusState(t, c)
	if before != after {
		t.Fatalf("the bad input changed the cluster's state:\nbefore: %s\nafter:  %s", before, after)
	}
}

// corpusState is what bad input must not change: the apps (id, name,
// state, instances), the workers' ids and cores, and the stored bundles.
func corpusState(t *testing.T, c *testCluster) string {
	t.Helper()
	var parts []string
	for _, a := range c.apps() {
		inst := 0
		for _, p := range a.Processes {
			inst += p.Instances
		}
		parts = append(parts, strings.Join([]string{"app", a.ID, a.Name, string(a.State), a.Bundle.Digest, string(rune('0' + inst))}, " "))
	}
	for _, w := range c.aliveWorkers() {
		b, _ := json.Marshal(w.CPUs)
		parts = append(parts, "worker "+w.ID+" "+w.Addr+" "+string(b))
	}
	out := c.mustGear("jarstore", "ls", "-json")
	var bs []map[string]any
	_ = json.Unmarshal([]byte(out), &bs)
	for _, b := range bs {
		parts = append(parts, "bundle "+toString(b["digest"]))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}
