package worker

// What an executor gets from its worker: an environment built from an
// allow-list (never the worker's secrets), its own working directory, and
// (with gear.worker.user) an unprivileged user.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/cluster"
)

// inheritedEnv are the variables of the worker's own environment an
// executor inherits: what programs need to find their tools, locale, time
// zone and temp dir. Everything else (GEAR_TOKEN, GEAR_GOSSIP_KEY, TLS key
// paths, cloud credentials, whatever the worker was started with) stays
// with the worker. gear's own GEAR_* variables, gear.channel.* as
// GEAR_CHANNEL_* and the manifest's env are added on top by spec.
var inheritedEnv = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true,
	"LANG": true, "LANGUAGE": true, "TZ": true, "TMPDIR": true, "TERM": true,
	"JAVA_HOME": true, // jar bundles run `java`
}

// allowedEnv keeps the allow-listed variables of environ (KEY=VALUE).
func allowedEnv(environ []string) map[string]string {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if inheritedEnv[k] || strings.HasPrefix(k, "LC_") {
			env[k] = v
		}
	}
	return env
}

// Working directories. The unpacked bundle (<datadir>/bundles/<hex>.d,
// GEAR_BUNDLE_DIR) is shared by every executor of the bundle on this worker
// and made read-only once unpacked. Each executor runs in its own directory,
// <datadir>/run/<executor id>, which starts as a copy of the bundle's files:
// reflinked (FICLONE) where the file system shares blocks, else copied.
// Links into the shared directory would not do: an executor running as
// root (no gear.worker.user) ignores the read-only mode bits and would
// write through a link into the files every other instance runs. The
// directory is kept across the executor's restarts (and the worker's) and
// removed when the executor is no longer assigned here.

// readOnlyTree takes every write bit off dir's files and directories.
func readOnlyTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // chmod would follow it
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, fi.Mode().Perm()&^0o222)
	})
}

// removeTree removes dir even where readOnlyTree took the write bits (a
// worker not running as root needs them back to unlink entries).
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// workDir returns the executor's own working directory, filling it with a
// copy of bundleDir ("" for a jar bundle: an empty directory) the first
// time. owner, if set, gets the directory and everything in it.
func (w *Worker) workDir(id, bundleDir string, owner *executorUser) (string, error) {
	run := filepath.Join(w.opts.DataDir, "run")
	dir := filepath.Join(run, id)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil // kept across restarts
	}
	tmp, err := os.MkdirTemp(run, "."+id+".tmp-")
	if err != nil {
		return "", fmt.Errorf("executor %s: create its working directory: %w", id, err)
	}
	defer removeTree(tmp) // gone after the rename
	if bundleDir != "" {
		if err := copyTree(bundleDir, tmp); err != nil {
			return "", fmt.Errorf("executor %s: copy the bundle into its working directory %s: %w", id, dir, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if owner != nil {
		if err := chownTree(tmp, owner.uid, owner.gid); err != nil {
			return "", fmt.Errorf("executor %s: give its working directory to %s: %w", id, owner.name, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("executor %s: create its working directory: %w", id, err)
	}
	return dir, nil
}

// removeWorkDir removes an executor's working directory once it is gone.
func (w *Worker) removeWorkDir(id string) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return
	}
	dir := filepath.Join(w.opts.DataDir, "run", id)
	if err := removeTree(dir); err != nil {
		w.log.Warn("cannot remove the working directory of a stopped executor", "executor", id, "dir", dir, "err", err)
	}
}

// copyTree copies src into the existing directory dst: directories and
// regular files (writable by their owner: the copy is the executor's) and
// symlinks as they are (the unpacker let only links inside the bundle in).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, 0o755)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case fi.Mode().IsRegular():
			return copyFile(p, to, fi.Mode().Perm()|0o200)
		}
		return nil // nothing else is unpacked
	})
}

// copyFile clones src to dst where the file system can (FICLONE), else
// copies it (copy_file_range under io.Copy).
func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// executorUser is the unprivileged user an executor runs as.
type executorUser struct {
	name       string // as configured: "user" or "user:group"
	uid, gid   int
	home, user string
}

// lookupUser resolves "user" or "user:group" on this machine; the group
// defaults to the user's primary group.
func lookupUser(spec string) (*executorUser, error) {
	name, group, _ := strings.Cut(spec, ":")
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w (create it, e.g. `useradd --system %s`, or fix gear.worker.user)", name, err, name)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %q has a non-numeric uid %q", name, u.Uid)
	}
	gidStr := u.Gid
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("group %q of %q: %w", group, spec, err)
		}
		gidStr = g.Gid
	}
	gid, err := strconv.Atoi(gidStr)
	if err != nil {
		return nil, fmt.Errorf("group of %q has a non-numeric gid %q", spec, gidStr)
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("%q is root (uid %d, gid %d): name an unprivileged user", spec, uid, gid)
	}
	return &executorUser{name: spec, uid: uid, gid: gid, home: u.HomeDir, user: u.Username}, nil
}

// executorUser picks the user a process group runs as: its own user =
// "..." where gear.worker.allowed-users lists it, else gear.worker.user,
// else nil (the worker's own user).
func (w *Worker) executorUser(p cluster.Process) (*executorUser, error) {
	spec := w.opts.User
	if p.User != "" {
		if !slices.Contains(w.opts.AllowedUsers, p.User) {
			allowed := "none"
			if len(w.opts.AllowedUsers) > 0 {
				allowed = strings.Join(w.opts.AllowedUsers, ", ")
			}
			return nil, fmt.Errorf("%w: process group %s asks for user %q, which this worker does not allow (gear.worker.allowed-users: %s)",
				errFinal, p.Name, p.User, allowed)
		}
		spec = p.User
	}
	if spec == "" {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: running executors as %q needs a worker running as root (this one runs as uid %d)", errFinal, spec, os.Geteuid())
	}
	u, err := lookupUser(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFinal, err)
	}
	return u, nil
}

// errFinal marks a preparation error that retrying cannot fix.
var errFinal = errors.New("cannot run the executor")

// lockDataDir makes the worker's data dir unreadable to executors running
// as another user: they may pass through it to their own working directory
// and the bundle cache (0711), but list nothing, and the logs, pid files,
// secrets and admin socket stay the worker's.
func lockDataDir(dataDir string) error {
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{
		{dataDir, 0o711}, {filepath.Join(dataDir, "run"), 0o711}, {filepath.Join(dataDir, "bundles"), 0o711},
		{filepath.Join(dataDir, "logs"), 0o700}, {filepath.Join(dataDir, "pids"), 0o700},
	} {
		if err := os.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("restrict %s: %w", d.path, err)
		}
	}
	return nil
}

// credential is what procs sets on the process (nil: the worker's user).
func (u *executorUser) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}
}

// untraversable returns the first parent of dir that others cannot pass
// through (no o+x), or "".
func untraversable(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return d
		}
		if d == "/" || d == "." {
			return ""
		}
	}
}
