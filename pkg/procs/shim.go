package procs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ShimArg is the first argument that makes a gear binary act as the
// socket-activation shim: `gear ShimArg PATH ARGV0 ARGS...` sets
// LISTEN_PID to its own pid and execs PATH with ARGV0 ARGS... in place.
// exec keeps the pid, the cpu affinity (pinning), the process group and
// the descriptors without close-on-exec (the passed sockets at fd 3...),
// so the program sees LISTEN_PID equal to its own pid, as the protocol
// demands. Go's os/exec cannot set the environment after fork, hence
// the shim.
//
// A binary that starts processes with Spec.Listeners must call RunShim
// first thing in main (and a test binary in TestMain).
const ShimArg = "__gear-listen-shim"

// RunShim acts as the shim and never returns when os.Args asks for it
// (see ShimArg); otherwise it returns at once.
func RunShim() {
	if len(os.Args) < 4 || os.Args[1] != ShimArg {
		return
	}
	path, argv := os.Args[2], os.Args[3:]
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTEN_PID=") {
			env = append(env, kv)
		}
	}
	env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	err := syscall.Exec(path, argv, env)
	fmt.Fprintf(os.Stderr, "gear: exec %s: %v\n", path, err)
	os.Exit(127)
}

// throughShim rewrites cmd to start the program through this binary as
// the shim, with the listeners at fd 3 onwards. The program is looked up
// here, so a missing one still fails Start with an *ExecError.
func throughShim(cmd *exec.Cmd, spec Spec) error {
	if cmd.Err != nil {
		if ee := execError(spec.Command[0], spec.Dir, cmd.Err); ee != nil {
			return ee
		}
		return fmt.Errorf("start %s: %w", spec.ID, cmd.Err)
	}
	path := cmd.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(spec.Dir, path)
		if spec.Dir == "" {
			if abs, err := filepath.Abs(cmd.Path); err == nil {
				path = abs
			}
		}
	}
	if st, err := os.Stat(path); err != nil {
		if ee := execError(spec.Command[0], spec.Dir, err); ee != nil {
			return ee
		}
		return fmt.Errorf("start %s: %w", spec.ID, err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return &ExecError{spec.Command[0], syscall.EACCES, "it must be an executable file (chmod +x) in directories this worker may enter"}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start %s: find the gear binary for the socket-activation shim: %w", spec.ID, err)
	}
	names := spec.ListenerNames
	if len(names) != len(spec.Listeners) {
		names = make([]string, len(spec.Listeners))
		for i := range names {
			names[i] = "listen" + strconv.Itoa(i)
		}
	}
	cmd.Path = self
	cmd.Args = append([]string{self, ShimArg, path}, cmd.Args...)
	cmd.Err = nil
	cmd.ExtraFiles = spec.Listeners
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	kept := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LISTEN_FDS=") && !strings.HasPrefix(kv, "LISTEN_FDNAMES=") && !strings.HasPrefix(kv, "LISTEN_PID=") {
			kept = append(kept, kv)
		}
	}
	cmd.Env = append(kept, "LISTEN_FDS="+strconv.Itoa(len(spec.Listeners)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	return nil
}
