package procs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Resource limits by cgroup. A process with Spec.Memory or Spec.MaxPids
// runs in a cgroup of its own, <the worker's cgroup>/<Spec.CgroupParent>/
// <Spec.ID>, removed when it exits:
//
//   - cgroup v2 (a unified hierarchy whose memory and pids controllers are
//     enabled for the worker's cgroup): memory.max and pids.max; the child
//     is cloned straight into it (clone3 CLONE_INTO_CGROUP);
//   - cgroup v1 otherwise: memory.limit_in_bytes (and memsw, where swap
//     accounting exists) and pids.max. v1 membership is per thread, so the
//     forking OS thread joins the cgroup for the fork and leaves it after,
//     the way startPinned narrows its CPU mask: the child runs no
//     instruction outside its cgroup.
//
// The kernel kills a process over its memory limit with SIGKILL; the exit
// then reads "out of memory" (ExitStatus.OOM) from memory.events'
// oom_kill (v2) or memory.oom_control's oom_kill / memory.failcnt (v1).

// cgroupRoot is where the hierarchies are mounted (a variable for tests).
var cgroupRoot = "/sys/fs/cgroup"

// ErrNoCgroups: limits were asked for and the machine cannot enforce them.
var ErrNoCgroups = errors.New("cgroups unavailable")

// cgroup is one process's cgroup: a v2 directory, or v1 directories per
// controller.
type cgroup struct {
	v2   string            // unified directory, "" for v1
	v1   map[string]string // controller -> directory
	back map[string]string // v1: controller -> the worker thread's own cgroup dir (to leave)
}

// ownCgroups reads /proc/self/cgroup: controller ("" for v2) -> path.
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, sc.Err()
}

// newCgroup creates the cgroup for spec and writes its limits.
func newCgroup(spec Spec) (*cgroup, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, fmt.Errorf("%w: read /proc/self/cgroup: %v", ErrNoCgroups, err)
	}
	parent := spec.CgroupParent
	if parent == "" {
		parent = "gear"
	}
	write := func(dir, file, val string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil {
			return fmt.Errorf("set %s: %w", file, err)
		}
		return nil
	}
	// v2: the unified hierarchy with both controllers delegated to us.
	if p, ok := own[""]; ok && len(own) == 1 {
		base := filepath.Join(cgroupRoot, p)
		ctrl, _ := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
		if strings.Contains(string(ctrl), "memory") && strings.Contains(string(ctrl), "pids") {
			pdir := filepath.Join(base, parent)
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
			}
			_ = write(pdir, "cgroup.subtree_control", "+memory +pids")
			dir := filepath.Join(pdir, spec.ID)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
			}
			c := &cgroup{v2: dir}
			if spec.Memory > 0 {
				if err := write(dir, "memory.max", strconv.FormatInt(spec.Memory, 10)); err != nil {
					c.remove()
					return nil, err
				}
				_ = write(dir, "memory.swap.max", "0")
			}
			if spec.MaxPids > 0 {
				if err := write(dir, "pids.max", strconv.Itoa(spec.MaxPids)); err != nil {
					c.remove()
					return nil, err
				}
			}
			return c, nil
		}
	}
	// v1: one hierarchy per controller.
	c := &cgroup{v1: map[string]string{}, back: map[string]string{}}
	for _, ctrl := range []string{"memory", "pids"} {
		p, ok := own[ctrl]
		if !ok {
			return nil, fmt.Errorf("%w: no %s controller (v1) nor a delegated v2 one in /proc/self/cgroup", ErrNoCgroups, ctrl)
		}
		base := filepath.Join(cgroupRoot, ctrl, p)
		dir := filepath.Join(base, parent, spec.ID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			c.remove()
			return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
		}
		c.v1[ctrl], c.back[ctrl] = dir, base
	}
	if spec.Memory > 0 {
		m := c.v1["memory"]
		if err := write(m, "memory.limit_in_bytes", strconv.FormatInt(spec.Memory, 10)); err != nil {
			c.remove()
			return nil, err
		}
		// No swap beyond the limit where swap is accounted.
		_ = write(m, "memory.memsw.limit_in_bytes", strconv.FormatInt(spec.Memory, 10))
	}
	if spec.MaxPids > 0 {
		if err := write(c.v1["pids"], "pids.max", strconv.Itoa(spec.MaxPids)); err != nil {
			c.remove()
			return nil, err
		}
	}
	return c, nil
}

// enter moves the calling OS thread into the v1 cgroups (its thread id
// into tasks); leave moves it back. The caller holds the thread locked.
func (c *cgroup) enter() error {
	tid := strconv.Itoa(unix.Gettid())
	for ctrl, dir := range c.v1 {
		if err := os.WriteFile(filepath.Join(dir, "tasks"), []byte(tid), 0o644); err != nil {
			return fmt.Errorf("join %s cgroup: %w", ctrl, err)
		}
	}
	return nil
}

func (c *cgroup) leave() error {
	tid := strconv.Itoa(unix.Gettid())
	var errs []error
	for ctrl, dir := range c.back {
		if err := os.WriteFile(filepath.Join(dir, "tasks"), []byte(tid), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("leave %s cgroup: %w", ctrl, err))
		}
	}
	return errors.Join(errs...)
}

// oomKilled reports whether the kernel killed a process of the cgroup for
// memory.
func (c *cgroup) oomKilled() bool {
	if c.v2 != "" {
		return readKey(filepath.Join(c.v2, "memory.events"), "oom_kill") > 0
	}
	m := c.v1["memory"]
	if readKey(filepath.Join(m, "memory.oom_control"), "oom_kill") > 0 {
		return true
	}
	b, _ := os.ReadFile(filepath.Join(m, "memory.failcnt"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n > 0
}

// readKey reads "key N" from a flat-keyed cgroup file (0 if absent).
func readKey(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the cgroup once its last task is gone (the group was
// killed before; a few tries for the kernel to notice).
func (c *cgroup) remove() {
	dirs := []string{c.v2}
	for _, d := range c.v1 {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		for i := 0; i < 50; i++ {
			if err := unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The parent too once empty (it fails while another executor
		// of the worker runs in it, which is fine).
		_ = unix.Rmdir(filepath.Dir(d))
	}
}

// startInCgroup starts cmd in cgroup c (and pinned to cpus): v2 by
// clone3 into the cgroup's fd, v1 by forking from a thread that joined it.
func startInCgroup(cmd *exec.Cmd, c *cgroup, cpus []int) error {
	if c.v2 != "" {
		fd, err := unix.Open(c.v2, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", c.v2, err)
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		return startPinnedHook(cmd, cpus, nil, nil)
	}
	return startPinnedHook(cmd, cpus, c.enter, c.leave)
}

// openCgroup finds the cgroup an earlier run of the worker made for spec
// (an adopted process), nil if there is none.
func openCgroup(spec Spec) *cgroup {
	if spec.Memory <= 0 && spec.MaxPids <= 0 {
		return nil
	}
	own, err := ownCgroups()
	if err != nil {
		return nil
	}
	parent := spec.CgroupParent
	if parent == "" {
		parent = "gear"
	}
	exists := func(d string) bool { st, err := os.Stat(d); return err == nil && st.IsDir() }
	if p, ok := own[""]; ok && len(own) == 1 {
		if d := filepath.Join(cgroupRoot, p, parent, spec.ID); exists(d) {
			return &cgroup{v2: d}
		}
		return nil
	}
	c := &cgroup{v1: map[string]string{}, back: map[string]string{}}
	for _, ctrl := range []string{"memory", "pids"} {
		base := filepath.Join(cgroupRoot, ctrl, own[ctrl])
		if d := filepath.Join(base, parent, spec.ID); own[ctrl] != "" && exists(d) {
			c.v1[ctrl], c.back[ctrl] = d, base
		}
	}
	if len(c.v1) == 0 {
		return nil
	}
	return c
}
