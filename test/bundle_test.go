package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// unpackedBundles lists the unpacked bundle directories (and any unpack or
// eviction leftovers) in a worker's bundle cache.
func unpackedBundles(t *testing.T, cacheDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(cacheDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestWorkerEvictsUnpackedBundle (issue 11, finding 4): after `app kill`
// the unpacked bundle no executor on the worker uses goes away; while an
// executor uses it, it stays.
func TestWorkerEvictsUnpackedBundle(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: "gear.worker.cache-grace = 1s\n"})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	waitFor(t, 20*time.Second, "the worker to register", func() bool {
		out, _, code := c.gear("workers", "-json")
		return code == 0 && strings.Contains(out, `"alive": true`)
	})
	cacheDir := filepath.Join(c.dir, "worker0", "bundles")
	id := strings.TrimSpace(c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet"))
	var pids map[string]int
	waitFor(t, 30*time.Second, "app "+id+" RUNNING", func() bool {
		pids = runningPIDs(c.app(id))
		return len(pids) == 1
	})
	dirs := unpackedBundles(t, cacheDir)
	if len(dirs) != 1 || !strings.HasSuffix(dirs[0], ".d") {
		t.Fatalf("worker cache holds %v, want one unpacked bundle", dirs)
	}
	// In use: it outlives the grace (1s) several times over.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if got := unpackedBundles(t, cacheDir); len(got) != 1 {
			t.Fatalf("the unpacked bundle of a running executor was evicted: cache holds %v", got)
		}
		for _, pid := range pids {
			if !alive(pid) {
				t.Fatalf("executor pid %d died", pid)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.mustGear("app", "kill", id)
	waitFor(t, 30*time.Second, "the unpacked bundle of the killed app to leave the worker's cache", func() bool {
		return len(unpackedBundles(t, cacheDir)) == 0
	})
	// The download stays (under gear.worker.cache-size) for a resubmit,
	// which unpacks it again.
	ents, _ := os.ReadDir(cacheDir)
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".bundle") {
		t.Fatalf("worker cache after eviction holds %v, want the downloaded bundle only", ents)
	}
	id2 := strings.TrimSpace(c.mustGear("app", "submit", example("hello.tar.gz"), "-executors", "1", "-quiet"))
	waitFor(t, 30*time.Second, "the resubmitted app RUNNING", func() bool { return len(runningPIDs(c.app(id2))) == 1 })
}

// writeBombTarGz streams a .tar.gz with a manifest and size zero bytes in
// "run" to w (never in memory).
func writeBombTarGz(w io.Writer, size int64) error {
	return writeRunTarGz(w, "bomb", gzip.BestCompression, zeros{}, size, nil)
}

// writeEscapingTarGz writes a bundle of size random bytes (stored, not
// compressed) whose last entry is a symlink out of the bundle.
func writeEscapingTarGz(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	link := &tar.Header{Name: "lib/etc", Linkname: "../../../etc", Mode: 0o777, Typeflag: tar.TypeSymlink}
	if err := writeRunTarGz(f, "escape", gzip.NoCompression, rand.Reader, size, link); err != nil {
		return err
	}
	return f.Close()
}

// writeRunTarGz streams a .tar.gz app named name to w: its manifest, an
// executable "run" of size bytes read from fill, and then last, if not nil.
func writeRunTarGz(w io.Writer, name string, level int, fill io.Reader, size int64, last *tar.Header) error {
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	conf := []byte("name = " + name + "\nprocesses { p { command = [\"./run\"] } }\n")
	if err := tw.WriteHeader(&tar.Header{Name: "gear-app.conf", Mode: 0o644, Size: int64(len(conf)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(conf); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "run", Mode: 0o755, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, fill, size); err != nil {
		return err
	}
	if last != nil {
		if err := tw.WriteHeader(last); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func postJSON(t *testing.T, url string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	status, msg := postBody(t, host, "/"+path, bytes.NewReader(b), int64(len(b)))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(msg), &e) == nil && e.Error != "" {
		return status, e.Error
	}
	return status, msg
}

// TestBundleBombAndKind (issue 11, finding 4 and the small ones): a bomb
// that skips the CLI's check is refused by the worker at its configured
// limit, leaving nothing unpacked; an unknown bundle kind is refused by
// the master with the list of kinds.
func TestBundleBombAndKind(t *testing.T) {
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: "gear.bundle.max-expansion = 50\n"})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	base := "http://" + c.masters[0]

	// The CLI refuses the bomb before its upload completes (the check
	// runs alongside the upload, which holds back its last bytes until
	// the check has passed): no blob, no app.
	bombPath := filepath.Join(t.TempDir(), "bomb.tar.gz")
	f, err := os.Create(bombPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBombTarGz(f, 64<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, errOut, code := c.gear("app", "submit", bombPath, "-quiet")
	if code == 0 || !strings.Contains(errOut, "gear.bundle.max-expansion") || !strings.Contains(errOut, "50:1") {
		t.Fatalf("gear app submit of a bomb: exit %d, stderr %s; want a refusal naming gear.bundle.max-expansion and 50:1", code, errOut)
	}
	if ls := jarstoreLs(t, c); len(ls) != 0 {
		t.Fatalf("the CLI uploaded the bomb: %+v", ls)
	}

	// A bad bundle larger than what the upload holds back: the upload is
	// under way when the CLI's check finds the escaping symlink at the
	// archive's end. The CLI cuts the upload off and says what is wrong
	// with the bundle, as it did when the check ran first; the master
	// drops the partial temporary file; nothing is stored.
	badPath := filepath.Join(t.TempDir(), "escape.tar.gz")
	if err := writeEscapingTarGz(badPath, 48<<20); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.gear("app", "submit", badPath, "-quiet")
	if code == 0 || !strings.Contains(errOut, `symlink "lib/etc"`) || !strings.Contains(errOut, "outside the bundle") || strings.Contains(errOut, "upload "+badPath) {
		t.Fatalf("gear app submit of a bundle with an escaping symlink: exit %d, stderr %s; want the symlink refusal, not an upload error", code, errOut)
	}
	mlog := c.procs["master0"].log
	waitFor(t, 20*time.Second, "the master to drop the cut-off upload", func() bool {
		for _, l := range strings.Split(readFile(t, mlog), "\n") {
			if strings.Contains(l, "bundle upload failed") && strings.Contains(l, "escape.tar.gz") {
				return true
			}
		}
		return false
	})
	if tmps, _ := filepath.Glob(filepath.Join(c.dir, "master0", "jars", ".tmp-*")); len(tmps) != 0 {
		t.Fatalf("the cut-off upload left %v in the jar store", tmps)
	}
	if ls := jarstoreLs(t, c); len(ls) != 0 {
		t.Fatalf("the cut-off upload left a blob: %+v", ls)
	}

	// Straight to the API, the worker refuses it while unpacking.
	bomb, err := os.Open(bombPath)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/api/v1/bundles?name=bomb.tar.gz", "application/octet-stream", bomb)
	bomb.Close()
	if err != nil {
		t.Fatal(err)
	}
	var b cluster.Bundle
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %s %v", resp.Status, err)
	}
	resp.Body.Close()
	procs := []cluster.Process{{Name: "p", Command: []string{"./run"}, Instances: 1}}

	// Unknown kind: refused by the master, nothing recorded.
	exe := b
	exe.Kind = "exe"
	status, msg := postJSON(t, base+"/api/v1/apps", cluster.SubmitRequest{Name: "exe", Bundle: exe, Processes: procs})
	if status != http.StatusBadRequest || !strings.Contains(msg, `"exe"`) || !strings.Contains(msg, `tar.gz`) || !strings.Contains(msg, `zip`) {
		t.Fatalf("submit of kind exe = %d %s; want 400 naming the kind and listing the known ones", status, msg)
	}
	if apps := c.apps(); len(apps) != 0 {
		t.Fatalf("a refused submit created apps: %+v", apps)
	}

	// The bomb itself: the master's own inspection of the stored bundle
	// (issue 17) refuses it at its configured limit, before any worker
	// unpacks anything.
	status, msg = postJSON(t, base+"/api/v1/apps", cluster.SubmitRequest{Name: "bomb", Bundle: b, Processes: procs})
	if status != http.StatusBadRequest || !strings.Contains(msg, "gear.bundle.max-expansion") || !strings.Contains(msg, "50:1") {
		t.Fatalf("submit of a bomb via the API: %d %s; want 400 naming gear.bundle.max-expansion and 50:1", status, msg)
	}
	if apps := c.apps(); len(apps) != 0 {
		t.Fatalf("a refused submit created apps: %+v", apps)
	}
	if got := unpackedBundles(t, filepath.Join(c.dir, "worker0", "bundles")); len(got) != 0 {
		t.Fatalf("a refused bomb left %v in the worker's cache", got)
	}
}
