package worker

// What an executor gets from its worker: an environment built from an
// allow-list (never the worker's secrets), its own working directory, and
// (with gear.worker.user) an unprivileged user.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// <datadir>/run/<executor id>, which starts as a copy of the bundle's files.
// Links into the shared directory would not do: an executor running as
// root (no gear.worker.user) ignores the read-only mode bits and would
// write through a link into the files every other instance runs. The
// directory is kept across the executor's restarts (and the worker's) and
// removed when the executor is no longer assigned here.
//
// It is made for every executor, so it costs as little as the file system
// allows: the bundle's tree is read once per unpacked directory (treeCache)
// and each copy is written from memory (small files) or cloned/copied
// from the bundle (large ones); a copy with entries is built under a
// temporary name and renamed into place, so a worker that dies half way
// never leaves a half copy that its next start would take for complete;
// an empty one (a jar bundle) is a single mkdir under the final name.

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
	var tree *bundleTree
	if bundleDir != "" {
		var err error
		if tree, err = w.trees.get(bundleDir); err != nil {
			return "", fmt.Errorf("executor %s: read the bundle %s to copy it into its working directory: %w", id, bundleDir, err)
		}
	}
	if tree.empty() && owner == nil {
		// Nothing to copy and nobody to hand it to: complete the moment
		// it exists.
		if err := mkdirMode(dir, 0o755); err != nil {
			return "", fmt.Errorf("executor %s: create its working directory: %w", id, err)
		}
		return dir, nil
	}
	tmp, err := mkdirTemp(run, "."+id+".tmp-", 0o755)
	if err != nil {
		return "", fmt.Errorf("executor %s: create its working directory: %w", id, err)
	}
	done := false
	defer func() {
		if !done {
			removeTree(tmp)
		}
	}()
	if err := tree.copyInto(tmp); err != nil {
		return "", fmt.Errorf("executor %s: copy the bundle into its working directory %s: %w", id, dir, err)
	}
	if owner != nil {
		if err := chownTree(tmp, owner.uid, owner.gid); err != nil {
			return "", fmt.Errorf("executor %s: give its working directory to %s: %w", id, owner.name, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("executor %s: create its working directory: %w", id, err)
	}
	done = true
	return dir, nil
}

// mkdirMode creates dir with exactly perm, whatever the umask: a chmod
// follows the mkdir only when the umask took bits off.
func mkdirMode(dir string, perm fs.FileMode) error {
	if err := os.Mkdir(dir, perm); err != nil {
		return err
	}
	if perm&^processUmask() != perm {
		return os.Chmod(dir, perm)
	}
	return nil
}

// mkdirTemp is os.MkdirTemp with the mode perm (os.MkdirTemp makes 0700,
// which would cost a chmod per working directory).
func mkdirTemp(parent, prefix string, perm fs.FileMode) (string, error) {
	for range 100 {
		dir := filepath.Join(parent, prefix+strconv.FormatUint(rand.Uint64(), 36))
		err := mkdirMode(dir, perm)
		if !errors.Is(err, fs.ErrExist) {
			return dir, err
		}
	}
	return "", fmt.Errorf("create a temporary directory in %s: too many names taken", parent)
}

var umaskOnce = sync.OnceValue(func() fs.FileMode {
	// /proc/self/status has it (Linux 4.7+) without the race of setting
	// it to read it; where it cannot be read, assume the strictest, so
	// that the chmod always runs.
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return fs.FileMode(m) & fs.ModePerm
				}
			}
		}
	}
	return fs.ModePerm
})

// processUmask is the worker's umask (read once: nothing in gear changes it).
func processUmask() fs.FileMode { return umaskOnce() }

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

// Small files of a bundle are kept in memory to be written into each
// copy; larger ones are cloned or copied from the unpacked bundle.
const (
	treeFileMax  = 64 << 10
	treeBytesMax = 256 << 10
	treeCacheMax = 32 // unpacked bundles whose tree is kept: at most 8 MiB of file contents
)

// bundleTree is an unpacked bundle's tree as each working directory gets
// it: directories, regular files (writable by their owner: the copy is the
// executor's) and symlinks as they are (the unpacker let only links
// inside the bundle in).
type bundleTree struct {
	src     string
	entries []treeEntry
}

type treeEntry struct {
	rel    string
	kind   fs.FileMode // 0 (regular), fs.ModeDir or fs.ModeSymlink
	perm   fs.FileMode
	target string // symlink
	data   []byte // a small regular file's content; nil: copy it from src
	inline bool   // data holds the whole content (possibly empty)
}

func (t *bundleTree) empty() bool { return t == nil || len(t.entries) == 0 }

// readBundleTree reads src's tree (lexical order: a directory comes before
// what it holds).
func readBundleTree(src string) (*bundleTree, error) {
	t := &bundleTree{src: src}
	var inlined int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{rel: rel, perm: fi.Mode().Perm()}
		switch {
		case d.IsDir():
			e.kind = fs.ModeDir
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind = fs.ModeSymlink
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if fi.Size() <= treeFileMax && inlined+fi.Size() <= treeBytesMax {
				if e.data, err = os.ReadFile(p); err != nil {
					return err
				}
				e.inline = true
				inlined += int64(len(e.data))
			}
		default:
			return nil // nothing else is unpacked
		}
		t.entries = append(t.entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// copyInto writes the tree into the existing directory dst.
func (t *bundleTree) copyInto(dst string) error {
	if t == nil {
		return nil
	}
	for _, e := range t.entries {
		to := filepath.Join(dst, e.rel)
		var err error
		switch {
		case e.kind == fs.ModeDir:
			err = os.Mkdir(to, 0o755)
		case e.kind == fs.ModeSymlink:
			err = os.Symlink(e.target, to)
		case e.inline:
			err = writeNewFile(to, e.data, e.perm|0o200)
		default:
			err = copyFile(filepath.Join(t.src, e.rel), to, e.perm|0o200)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeNewFile creates path (which must not exist) holding data.
func writeNewFile(path string, data []byte, perm fs.FileMode) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	for len(data) > 0 && err == nil {
		var n int
		n, err = unix.Write(fd, data)
		data = data[n:]
		if err == unix.EINTR {
			err = nil
		}
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// treeCache keeps the trees of the unpacked bundles, read once each. The
// path of an unpacked bundle names its digest (<hex>.d) and what is in it
// is read-only, so a tree once read stays right for that path: even after
// the bundle cache evicts the directory and unpacks the same bundle there
// again. At most treeCacheMax are kept (then it starts afresh).
type treeCache struct {
	mu    sync.Mutex
	trees map[string]*treeSlot
}

type treeSlot struct {
	once sync.Once
	tree *bundleTree
	err  error
}

// get returns src's tree.
func (c *treeCache) get(src string) (*bundleTree, error) {
	c.mu.Lock()
	slot := c.trees[src]
	if slot == nil {
		if c.trees == nil || len(c.trees) >= treeCacheMax {
			c.trees = map[string]*treeSlot{}
		}
		slot = &treeSlot{}
		c.trees[src] = slot
	}
	c.mu.Unlock()
	slot.once.Do(func() { slot.tree, slot.err = readBundleTree(src) })
	if slot.err != nil {
		c.mu.Lock()
		if c.trees[src] == slot {
			delete(c.trees, src) // read it again next time
		}
		c.mu.Unlock()
	}
	return slot.tree, slot.err
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
