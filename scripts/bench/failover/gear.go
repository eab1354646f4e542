package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// gearBackend runs `gear master` processes with a gear.conf that lists the
// three of them, default failover timeout.
type gearBackend struct {
	bin    string
	dir    string
	conf   string
	addrs  []string
	client *http.Client
	// wrap, if set, runs member i's command elsewhere (its namespace).
	wrap func(i int, cmd *exec.Cmd) *exec.Cmd
}

// newGear writes the gear.conf for three masters on free ports under dir.
func newGear(bin, dir string, client *http.Client) (*gearBackend, error) {
	ports, err := freePorts(size, true)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, p := range ports {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(p))
	}
	return newGearAt(bin, dir, client, addrs, nil)
}

// newGearAt writes the gear.conf for three masters at addrs (host:port);
// wrap, if set, runs each member's command in its place (a namespace).
func newGearAt(bin, dir string, client *http.Client, addrs []string, wrap func(int, *exec.Cmd) *exec.Cmd) (*gearBackend, error) {
	b := &gearBackend{bin: bin, dir: dir, conf: filepath.Join(dir, "gear.conf"), client: client, addrs: addrs, wrap: wrap}
	var quoted []string
	for _, a := range addrs {
		quoted = append(quoted, strconv.Quote(a))
	}
	conf := "gear.cluster.masters = [" + strings.Join(quoted, ", ") + "]\n"
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write gear.conf: %w", err)
	}
	return b, nil
}

func (b *gearBackend) name() string { return "gear" }

func (b *gearBackend) command(i int) *exec.Cmd {
	host, port := b.addrs[i][:strings.LastIndexByte(b.addrs[i], ':')], b.addrs[i][strings.LastIndexByte(b.addrs[i], ':')+1:]
	cmd := exec.Command(b.bin, "master", "-ip", host, "-port", port, "-datadir", filepath.Join(b.dir, "master-"+strconv.Itoa(i)))
	cmd.Env = append(os.Environ(), "GEAR_CONF="+b.conf)
	if b.wrap != nil {
		return b.wrap(i, cmd)
	}
	return cmd
}

func (b *gearBackend) status(ctx context.Context, i int) (memberStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addrs[i]+"/api/v1/status", nil)
	if err != nil {
		return memberStatus{}, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return memberStatus{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return memberStatus{}, fmt.Errorf("gear status %s: HTTP %d", b.addrs[i], resp.StatusCode)
	}
	var st struct {
		Addr   string `json:"addr"`
		Term   uint64 `json:"term"`
		Leader string `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return memberStatus{}, fmt.Errorf("gear status %s: %w", b.addrs[i], err)
	}
	return memberStatus{ID: st.Addr, Leader: st.Leader, Term: st.Term}, nil
}

// write kills application 999, which does not exist: the command goes
// through the raft log and fails validation when applied, so a 404 "no
// such application" proves that a leader committed an entry. While there
// is no leader the masters answer 503.
func (b *gearBackend) write(ctx context.Context, i int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.addrs[i]+"/api/v1/apps/999/kill", nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte("no such application")) {
		return nil
	}
	return fmt.Errorf("gear write via %s: HTTP %d: %s", b.addrs[i], resp.StatusCode, bytes.TrimSpace(body))
}
