package procs

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInheritedOnExec marks every descriptor from 3 up close-on-exec, so
// that what this process inherited from whoever started it (a lock held by
// a script's flock, a pipe of a supervisor, a socket of a shell) is not
// passed on to the processes it starts. The descriptors stay open here.
// Go opens its own with close-on-exec already, and a started process gets
// only its stdio and the listeners it is given (Spec.Listeners, passed
// explicitly). Without this, an executor that outlives its worker kept
// such a descriptor open for as long as it ran: e.g. the lock of a
// `flock LOCK gear worker` stayed held, and a pipe never saw its end.
//
// Call it first thing in main, after RunShim (whose descriptors are the
// listeners it must pass on).
func CloseInheritedOnExec() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("mark inherited descriptors close-on-exec: %w", err)
	}
	// Kernels before 5.11: one by one, from the list of open descriptors.
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("mark inherited descriptors close-on-exec: list them: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("mark inherited descriptors close-on-exec: list them: %w", err)
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 3 {
			continue
		}
		// The listing's own descriptor is gone by now: EBADF is fine.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("mark inherited descriptor %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}
