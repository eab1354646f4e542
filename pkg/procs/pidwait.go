// Waiting for a process to exit without holding an OS thread for it.

package procs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// awaitExit blocks until the process behind pidfd has exited. A pidfd
// turns readable when its process exits, so the wait sits in the Go
// runtime's poller like a socket read: a worker supervising a thousand
// executors does not keep a thousand OS threads blocked in wait4 or poll
// (each one a task counted against pid_max and the user's process limit).
// awaitExit owns pidfd and closes it. An error means the descriptor could
// not be waited on this way (the caller then waits the blocking way); the
// process may still be running.
func awaitExit(pidfd int) error {
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return err
	}
	f := os.NewFile(uintptr(pidfd), "pidfd") // registers it with the poller: it is non-blocking
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			pollErr = err
			return true
		}
		return n > 0
	})
	if err != nil {
		return err // e.g. "waiting for unsupported file type": not in the poller
	}
	return pollErr
}
