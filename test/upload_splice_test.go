package test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUploadSplicedThroughFollower (issue 18): a plaintext upload sent to
// a follower is forwarded to the leader, which takes it off the socket by
// splice (its log says via=splice); a body that does not hash to the
// digest its uploader declared is refused with 400, and an upload whose
// client goes away halfway leaves nothing in the store.
func TestUploadSplicedThroughFollower(t *testing.T) {
	root, conf := jarstoreRoot(t, "")
	c := newCluster(t, clusterOpts{masters: 3, workers: 0, conf: conf})
	var leader string
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leader(); return leader != "" })
	follower := c.masters[0]
	if follower == leader {
		follower = c.masters[1]
	}
	data := make([]byte, 24<<20+7)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	post := func(body []byte, declared string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+follower+"/api/v1/bundles?name=big.tar.gz", bytes.NewReader(body))
		if declared != "" {
			req.Header.Set("X-Gear-Digest", declared)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("upload through follower %s: %v", follower, err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}
	if code, msg := post(data, digest); code != 200 || !strings.Contains(msg, digest) {
		t.Fatalf("upload through a follower: %d %s; want 200 with %s", code, msg, digest)
	}
	leaderLog := readFile(t, c.procs[c.masterName(leader)].log)
	if !strings.Contains(leaderLog, "bundle stored") || !strings.Contains(leaderLog, "via=splice") {
		t.Fatalf("the leader did not splice the forwarded upload; its log:\n%s", leaderLog)
	}
	want := []string{"sha256-" + strings.TrimPrefix(digest, "sha256:")}
	if got := storedBlobs(t, root); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("store holds %v, want %v", got, want)
	}

	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 0xff
	if code, msg := post(bad, digest); code != http.StatusBadRequest || !strings.Contains(msg, "declared") {
		t.Fatalf("damaged upload: %d %s; want 400 naming the declared digest", code, msg)
	}
	if got := storedBlobs(t, root); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the damaged upload the store holds %v, want %v", got, want)
	}

	// A client that sends half of what it declared and goes away.
	conn, err := net.Dial("tcp", follower)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/bundles?name=cut.tar.gz HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", follower, len(data))
	if _, err := conn.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the cut upload's temporary file", func() bool { return len(tempFiles(t, root)) == 1 })
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil && resp.StatusCode == 200 {
		t.Fatalf("a cut upload was answered %s", resp.Status)
	}
	conn.Close()
	waitFor(t, 20*time.Second, "the cut upload's leftovers to go", func() bool {
		return fmt.Sprint(storedBlobs(t, root)) == fmt.Sprint(want)
	})
}

// TestUploadSplicedDiskFull (issue 18): a spliced upload into a file://
// store on a full file system is answered 507 "disk full" and leaves no
// temporary file behind.
func TestUploadSplicedDiskFull(t *testing.T) {
	needRoot(t)
	disk := mountTmpfs(t, "8m")
	root := filepath.Join(disk, "jars")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, clusterOpts{masters: 1, conf: fmt.Sprintf("gear.jarstore.rootpath = %q\n", "file://"+root)})
	waitFor(t, 20*time.Second, "the lone master to lead", func() bool { return c.leader() == c.masters[0] })
	data := make([]byte, 16<<20)
	_, _ = rand.Read(data)
	resp, err := http.Post("http://"+c.masters[0]+"/api/v1/bundles?name=big.tar.gz", "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(msg), "disk full") {
		t.Fatalf("upload of 16 MiB into an 8 MiB store: %s %s; want 507 disk full", resp.Status, msg)
	}
	if !strings.Contains(readFile(t, c.procs["master0"].log), "via=splice") {
		t.Fatal("the upload did not take the spliced path")
	}
	waitFor(t, 10*time.Second, "the failed upload's temporary file to go", func() bool { return len(tempFiles(t, root)) == 0 })
	if blobs := storedBlobs(t, root); len(blobs) != 0 {
		t.Fatalf("the store holds %v after a failed upload", blobs)
	}
}
