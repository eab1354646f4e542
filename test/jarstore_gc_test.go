package test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

// startUpload begins a bundle upload whose body the test feeds through the
// returned writer; the result arrives on the channel once it is closed.
func startUpload(t *testing.T, master, name string) (*io.PipeWriter, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+master+"/api/v1/bundles?name="+name, "application/octet-stream", pr)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		var b cluster.Bundle
		if resp.StatusCode != 200 {
			msg, _ := io.ReadAll(resp.Body)
			done <- &uploadError{resp.Status + " " + string(msg)}
			return
		}
		done <- json.NewDecoder(resp.Body).Decode(&b)
	}()
	return pw, done
}

type uploadError struct{ msg string }

func (e *uploadError) Error() string { return e.msg }

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range storedBlobs(t, dir) {
		if strings.HasPrefix(n, ".tmp-") {
			out = append(out, n)
		}
	}
	return out
}

// TestJarStoreGCRemovesInterruptedUploads (issue 11, finding 5): the
// temporary file of an upload cut by kill -9 of the master goes with
// `jarstore gc -grace 0s`, while an upload in progress survives it.
func TestJarStoreGCRemovesInterruptedUploads(t *testing.T) {
	root, conf := jarstoreRoot(t, "")
	c := newCluster(t, clusterOpts{masters: 1, conf: conf})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })

	chunk := bytes.Repeat([]byte("bundle bytes "), 80_000) // ~1 MB
	pw, _ := startUpload(t, c.masters[0], "cut.tar.gz")
	if _, err := pw.Write(chunk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the upload's temporary file", func() bool { return len(tempFiles(t, root)) == 1 })
	c.kill("master0", syscall.SIGKILL)
	pw.CloseWithError(io.ErrUnexpectedEOF)
	leftover := tempFiles(t, root)
	if len(leftover) != 1 {
		t.Fatalf("after kill -9 mid-upload the store holds temp files %v, want the one of the cut upload", leftover)
	}
	c.startMaster(0)
	waitFor(t, 20*time.Second, "the restarted master to lead", func() bool { return c.leader() == c.masters[0] })
	if got := tempFiles(t, root); len(got) != 1 {
		t.Fatalf("a master start removed temporary files (only gc may): %v", got)
	}
	c.mustGear("jarstore", "gc", "-grace", "1h")
	if got := tempFiles(t, root); len(got) != 1 {
		t.Fatalf("gc -grace 1h removed a fresh leftover: %v", got)
	}

	// An upload in progress during gc -grace 0s.
	live, done := startUpload(t, c.masters[0], "live.tar.gz")
	if _, err := live.Write(chunk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the live upload's temporary file", func() bool { return len(tempFiles(t, root)) == 2 })
	out := c.mustGear("jarstore", "gc", "-grace", "0s")
	if !strings.Contains(out, "deleted 1 temporary file(s) of interrupted uploads") {
		t.Errorf("jarstore gc -grace 0s printed %q, want it to report the removed temporary file", out)
	}
	got := tempFiles(t, root)
	if len(got) != 1 || got[0] == leftover[0] {
		t.Fatalf("after gc -grace 0s the temp files are %v; want only the live upload's (the cut one %s removed)", got, leftover[0])
	}
	if _, err := live.Write(chunk); err != nil {
		t.Fatal(err)
	}
	live.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the upload in progress during gc failed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the upload in progress did not finish")
	}
	if got := tempFiles(t, root); len(got) != 0 {
		t.Fatalf("temp files left after the upload finished: %v", got)
	}
	if ls := jarstoreLs(t, c); len(ls) != 1 || ls[0].Size != int64(2*len(chunk)) {
		t.Fatalf("jarstore ls = %+v, want the one finished upload of %d bytes", ls, 2*len(chunk))
	}
}
