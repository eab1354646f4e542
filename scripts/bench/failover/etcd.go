package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// etcdBackend runs a 3-member etcd cluster with etcd's default timing
// (heartbeat 100 ms, election timeout 1 s) and talks to it through its
// HTTP/JSON gRPC gateway, as gear is talked to over HTTP: the same client,
// the same kind of request.
type etcdBackend struct {
	bin      string
	dir      string
	token    string
	client   []string // client URLs
	peer     []string // peer URLs
	http     *http.Client
	sequence atomic.Uint64
	wrap     func(i int, cmd *exec.Cmd) *exec.Cmd // runs member i elsewhere (its namespace)
}

// newEtcdAt runs member i on hosts[i] with etcd's default ports; wrap runs
// each member's command in its place (a namespace).
func newEtcdAt(bin, dir string, client *http.Client, hosts []string, wrap func(int, *exec.Cmd) *exec.Cmd) *etcdBackend {
	b := &etcdBackend{bin: bin, dir: dir, token: "bench-" + filepath.Base(dir), http: client, wrap: wrap}
	for _, h := range hosts {
		b.client = append(b.client, "http://"+h+":2379")
		b.peer = append(b.peer, "http://"+h+":2380")
	}
	return b
}

func newEtcd(bin, dir string, client *http.Client) (*etcdBackend, error) {
	ports, err := freePorts(2*size, false)
	if err != nil {
		return nil, err
	}
	b := &etcdBackend{bin: bin, dir: dir, token: "bench-" + filepath.Base(dir), http: client}
	for i := range size {
		b.client = append(b.client, "http://127.0.0.1:"+strconv.Itoa(ports[2*i]))
		b.peer = append(b.peer, "http://127.0.0.1:"+strconv.Itoa(ports[2*i+1]))
	}
	return b, nil
}

func (b *etcdBackend) name() string { return "etcd" }

func (b *etcdBackend) command(i int) *exec.Cmd {
	var initial []string
	for j := range size {
		initial = append(initial, fmt.Sprintf("m%d=%s", j, b.peer[j]))
	}
	// On a restart the data dir exists and etcd ignores the --initial-*
	// flags, rejoining as the member it was.
	cmd := exec.Command(b.bin,
		"--name", fmt.Sprintf("m%d", i),
		"--data-dir", filepath.Join(b.dir, fmt.Sprintf("m%d.etcd", i)),
		"--listen-client-urls", b.client[i], "--advertise-client-urls", b.client[i],
		"--listen-peer-urls", b.peer[i], "--initial-advertise-peer-urls", b.peer[i],
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", "new", "--initial-cluster-token", b.token,
		"--logger", "zap", "--log-outputs", "stderr",
	)
	if b.wrap != nil {
		return b.wrap(i, cmd)
	}
	return cmd
}

// u64 reads the gateway's uint64s, which are JSON strings.
type u64 uint64

func (u *u64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*u = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	*u = u64(v)
	return err
}

func (b *etcdBackend) post(ctx context.Context, i int, path string, body any, out any) error {
	in, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.client[i]+path, bytes.NewReader(in))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	var gwErr struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &gwErr)
	if resp.StatusCode != http.StatusOK || gwErr.Error != "" {
		return fmt.Errorf("etcd %s%s: HTTP %d: %s", b.client[i], path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("etcd %s%s: %w", b.client[i], path, err)
		}
	}
	return nil
}

func (b *etcdBackend) status(ctx context.Context, i int) (memberStatus, error) {
	var st struct {
		Header struct {
			MemberID u64 `json:"member_id"`
		} `json:"header"`
		Leader   u64 `json:"leader"`
		RaftTerm u64 `json:"raftTerm"`
	}
	if err := b.post(ctx, i, "/v3/maintenance/status", struct{}{}, &st); err != nil {
		return memberStatus{}, err
	}
	if st.Header.MemberID == 0 {
		return memberStatus{}, errors.New("etcd status without a member id")
	}
	ms := memberStatus{ID: strconv.FormatUint(uint64(st.Header.MemberID), 16), Term: uint64(st.RaftTerm)}
	if st.Leader != 0 {
		ms.Leader = strconv.FormatUint(uint64(st.Leader), 16)
	}
	return ms, nil
}

// write puts one key through member i. etcd answers once the entry is
// committed by a quorum and applied.
func (b *etcdBackend) write(ctx context.Context, i int) error {
	n := b.sequence.Add(1)
	put := map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte("bench/failover")),
		"value": base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(n, 10))),
	}
	return b.post(ctx, i, "/v3/kv/put", put, nil)
}

// ensureEtcd returns the path of etcd, installing the Debian
// packages etcd-server and etcd-client when they are missing and install
// is set.
func ensureEtcd(ctx context.Context, install bool, log *slog.Logger) (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if !install {
		return "", errors.New("etcd is not installed: apt-get install -y etcd-server etcd-client, or run without -install=false")
	}
	if os.Geteuid() != 0 {
		return "", errors.New("etcd is not installed and this is not root: run apt-get install -y etcd-server etcd-client first")
	}
	log.Info("etcd not found: installing the Debian packages etcd-server and etcd-client")
	for _, args := range [][]string{{"update"}, {"install", "-y", "etcd-server", "etcd-client"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd still not on PATH after apt-get install: %w", err)
	}
	return p, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
