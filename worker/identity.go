// The worker's identity on disk: its id, its heartbeat secret, and the
// cores it offers.

package worker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gear-run/gear/pkg/datadir"
	"github.com/gear-run/gear/pkg/procs"
)

// workerCPUs validates the configured cores against what this process may
// use; nil means all of them.
func workerCPUs(want []int) ([]int, error) {
	allowed, err := procs.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	if len(want) == 0 {
		return allowed, nil
	}
	for _, c := range want {
		if !slices.Contains(allowed, c) {
			return nil, fmt.Errorf("gear.worker.cpus lists core %d, but this machine lets the worker use only %s (online cores in its affinity mask)", c, procs.FormatCPUList(allowed))
		}
	}
	out := slices.Clone(want)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// workerSecret reads the secret that proves this worker's id to the
// masters, creating it (256 random bits, mode 0600) on first start. It
// stays with the data dir, so a restarted worker that adopts its executors
// keeps its identity.
func workerSecret(dir string) (string, error) {
	path := filepath.Join(dir, "worker-secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read worker secret: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("create worker secret: %w", err)
	}
	secret := hex.EncodeToString(b[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write worker secret: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write worker secret: %w", err)
	}
	return secret, nil
}

// workerID reads the worker's stable id from its data dir, creating it on
// first start.
func workerID(dir string) (string, error) {
	path := filepath.Join(dir, "worker-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := "w-" + datadir.RandomID()[:8]
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write worker id: %w", err)
	}
	return id, nil
}
