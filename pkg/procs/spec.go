package procs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults applied to zero Spec fields.
const (
	DefaultStopTimeout = 10 * time.Second
	DefaultLogMaxSize  = 10 << 20 // bytes
	DefaultLogMaxFiles = 5
)

// Sentinel errors. Errors returned by this package wrap them, so callers can
// test with errors.Is.
var (
	// ErrPortInUse: a port of Spec.Ports is held by another process.
	ErrPortInUse = errors.New("port in use")
	// ErrBadSpec: the Spec cannot be run as given (no command, bad CPU, bad ID).
	ErrBadSpec = errors.New("invalid process spec")
	// ErrStalePidFile: the pid file names a process that is gone or is a
	// different process now (pid reused). Adopt removes such a file.
	ErrStalePidFile = errors.New("stale pid file")
	// ErrFailed: a Supervisor gave up (crash loop, a command that cannot be
	// executed, or restart "never").
	ErrFailed = errors.New("executor failed")
	// ErrExec: the command cannot be executed: it does not exist, is not
	// executable, or is not a program this machine can run. Restarting
	// cannot help, so a Supervisor gives up at once. Start returns an
	// *ExecError, which matches it.
	ErrExec = errors.New("command cannot be executed")
)

// Spec says how to run one executor process.
type Spec struct {
	// ID names the process; it is used for the log and pid file names, so it
	// may hold letters, digits and ". _ -" only.
	ID string
	// Command is the program and its arguments. A relative program path is
	// taken relative to Dir; a bare name is looked up in the worker's PATH.
	Command []string
	// Dir is the working directory (empty: the worker's).
	Dir string
	// Env is the whole environment of the process (nil: the worker's).
	Env []string

	// CPUs are the exact cores the process may run on; empty means not
	// pinned. Each must be online and allowed for the worker itself.
	CPUs []int

	// StopTimeout bounds the pre-stop hook, and then separately the wait
	// between SIGTERM and SIGKILL. Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// PreStop is a command run (in Dir, with Env) before SIGTERM on a
	// graceful stop, e.g. to take the server out of a load balancer.
	PreStop []string

	// LogDir receives stdout and stderr as LogDir/<ID>.log, rotated to
	// <ID>.log.1 ... <ID>.log.<LogMaxFiles>. Empty: output is discarded.
	LogDir string
	// LogMaxSize is the size that triggers a rotation (0: DefaultLogMaxSize,
	// negative: never rotate).
	LogMaxSize int64
	// LogMaxFiles is how many rotated files are kept (0: DefaultLogMaxFiles).
	LogMaxFiles int

	// Memory (bytes) and MaxPids limit the process and its children by
	// cgroup (cgroup.go), in <the worker's cgroup>/CgroupParent/ID; 0: no
	// limit. CgroupParent "" is "gear".
	Memory       int64
	MaxPids      int
	CgroupParent string

	// Ports must be free before the start; a busy one fails Start with an
	// error naming it.
	Ports []int

	// Listeners are sockets passed to the process by systemd's socket
	// activation protocol: fd 3 onwards in this order, with LISTEN_FDS,
	// LISTEN_FDNAMES (ListenerNames joined by ':') and LISTEN_PID set to
	// the process's own pid. Since the pid is known only after fork, the
	// process is started through a shim (ShimArg) that sets LISTEN_PID
	// and execs the program in place, so the pid stays the same. The
	// caller keeps ownership of the files.
	Listeners     []*os.File
	ListenerNames []string

	// PidDir receives <PidDir>/<ID>.pid (pid and kernel start time) so that
	// a restarted worker can Adopt the process. Empty: no pid file.
	PidDir string

	// Credential, if set, runs the process (and its pre-stop hook) as
	// this user and group (the worker must be root). Nil: the worker's.
	Credential *syscall.Credential
}

func (s Spec) withDefaults() Spec {
	if s.StopTimeout <= 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	if s.LogMaxSize == 0 {
		s.LogMaxSize = DefaultLogMaxSize
	}
	if s.LogMaxFiles <= 0 {
		s.LogMaxFiles = DefaultLogMaxFiles
	}
	return s
}

// LogFile is the path of the current log file, or "" when output is discarded.
func (s Spec) LogFile() string {
	if s.LogDir == "" {
		return ""
	}
	return filepath.Join(s.LogDir, s.ID+".log")
}

// PidFile is the path of the pid file, or "" when none is written.
func (s Spec) PidFile() string {
	if s.PidDir == "" {
		return ""
	}
	return filepath.Join(s.PidDir, s.ID+".pid")
}

// Validate checks what can be checked without starting anything, except
// ports (see CheckPorts).
func (s Spec) Validate() error {
	if s.ID == "" || strings.Trim(s.ID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || s.ID[0] == '.' {
		return fmt.Errorf("%w: id %q: use letters, digits, '.', '_' and '-' only, not starting with '.'", ErrBadSpec, s.ID)
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		return fmt.Errorf("%w: %s: empty command (give the program and its arguments)", ErrBadSpec, s.ID)
	}
	if err := CheckCPUs(s.CPUs); err != nil {
		return fmt.Errorf("%s: %w", s.ID, err)
	}
	return nil
}

// CheckCPUs reports whether every core in cpus is online and in the worker's
// own affinity mask, and appears once.
func CheckCPUs(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	allowed, err := AllowedCPUs()
	if err != nil {
		return err
	}
	seen := map[int]bool{}
	for _, c := range cpus {
		if seen[c] {
			return fmt.Errorf("%w: cpu %d listed twice", ErrBadSpec, c)
		}
		seen[c] = true
		if !slices.Contains(allowed, c) {
			return fmt.Errorf("%w: cpu %d is not online or not allowed for this worker (usable: %s)", ErrBadSpec, c, FormatCPUList(allowed))
		}
	}
	return nil
}

// AllowedCPUs returns the cores this worker may run on and pin executors to:
// its affinity mask (sched_getaffinity) intersected with the online cores
// (/sys/devices/system/cpu/online). It is the one place gear discovers
// cores: the worker's usable cores and `gear local`'s share-out use it too.
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read worker cpu affinity: %w", err)
	}
	var affinity []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			affinity = append(affinity, c)
		}
	}
	online, err := os.ReadFile(onlineCPUsFile)
	if err != nil {
		// Without sysfs (some containers) the mask is all there is to go by.
		return affinity, nil
	}
	return onlineCPUs(affinity, strings.TrimSpace(string(online)))
}

const onlineCPUsFile = "/sys/devices/system/cpu/online"

// onlineCPUs keeps the cores of affinity that the kernel list online
// ("0-3,6") names: an offline core may stay in a process's mask, and
// pinning to it fails.
func onlineCPUs(affinity []int, online string) ([]int, error) {
	if online == "" {
		return affinity, nil // unreadable in practice: go by the mask
	}
	list, err := ParseCPUList(online)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", onlineCPUsFile, err)
	}
	var out []int
	for _, c := range affinity {
		if slices.Contains(list, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ParseCPUList parses the kernel's list format ("0-3,6,8-9"), as found in
// /proc/PID/status Cpus_allowed_list.
func ParseCPUList(s string) ([]int, error) {
	var out []int
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("bad cpu list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad cpu list %q", s)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// FormatCPUList formats cores in the kernel's list format ("0-3,6").
func FormatCPUList(cpus []int) string {
	c := slices.Clone(cpus)
	slices.Sort(c)
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", c[i], c[j])
		} else {
			fmt.Fprintf(&b, "%d", c[i])
		}
		i = j + 1
	}
	return b.String()
}

// CheckPorts fails with an error naming the first port of ports that some
// other process holds (TCP, any address), e.g.
// "port 8080 is already in use by another process".
func CheckPorts(ports []int) error {
	for _, p := range ports {
		if p <= 0 || p > 65535 {
			return fmt.Errorf("%w: port %d out of range 1-65535", ErrBadSpec, p)
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return &PortInUseError{Port: p}
			}
			return fmt.Errorf("check port %d: %w", p, err)
		}
		l.Close()
	}
	return nil
}

// PortInUseError says which port was busy. It matches ErrPortInUse.
type PortInUseError struct{ Port int }

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("port %d is already in use by another process", e.Port)
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }
