// Sockets the worker opens once and passes to every instance of a process
// group that lists them in listen = [...] (socket activation, LISTEN_FDS).
//
// The worker holds one listening socket per port for as long as an
// executor here uses it, so a restarting instance never leaves the port
// unbound: connections wait in the socket's backlog until an instance
// accepts them. Each running instance holds the socket too (fd 3...), so
// while the worker itself restarts the instances keep serving. A new
// worker process that adopts them takes the socket back from one of them
// with pidfd_getfd(2) (Linux 5.6+): it finds the listening socket's inode
// in /proc/net/tcp{,6} and the instance's descriptor pointing at it in
// /proc/PID/fd. Only this worker's own executors are searched, so a
// socket of an unrelated program on the same port is never taken.

package worker

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// errListenBusy: another process group holds the listen port on this
// worker (e.g. the executors of a killed app still stopping). It may pass,
// so preparing an executor retries it.
var errListenBusy = errors.New("listen port held by another process group")

// heldSocket is one listening socket and who uses it.
type heldSocket struct {
	file  *os.File
	owner string          // "app.process" that listens on it
	users map[string]bool // executor ids
}

// listeners are the worker's held sockets by port.
type listeners struct {
	mu    sync.Mutex
	socks map[int]*heldSocket
}

// acquire returns the socket for port, opening it on ip (or taking it
// back from one of pids, the worker's executors) the first time. owner is
// the app and process group; another group may not share the port.
func (l *listeners) acquire(ip string, port int, owner, exec string, pids []int) (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.socks == nil {
		l.socks = map[int]*heldSocket{}
	}
	if s := l.socks[port]; s != nil {
		if s.owner != owner {
			return nil, fmt.Errorf("%w: listen port %d: process group %s already listens on it on this worker; give each process group its own port", errListenBusy, port, s.owner)
		}
		s.users[exec] = true
		return s.file, nil
	}
	f, err := openListener(ip, port)
	if errors.Is(err, syscall.EADDRINUSE) {
		f, err = recoverListener(port, pids)
	}
	if err != nil {
		return nil, err
	}
	l.socks[port] = &heldSocket{file: f, owner: owner, users: map[string]bool{exec: true}}
	return f, nil
}

// release drops exec's use of every socket; a socket nobody uses is closed.
func (l *listeners) release(exec string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for port, s := range l.socks {
		if !s.users[exec] {
			continue
		}
		delete(s.users, exec)
		if len(s.users) == 0 {
			s.file.Close()
			delete(l.socks, port)
		}
	}
}

// closeAll closes the worker's copies (instances keep theirs).
func (l *listeners) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for port, s := range l.socks {
		s.file.Close()
		delete(l.socks, port)
	}
}

// openListener binds ip:port (SO_REUSEADDR, as Go sets on Linux; not
// SO_REUSEPORT: one socket, one accept queue) and returns its file.
func openListener(ip string, port int) (*os.File, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen port %d is already in use by another process: %w", port, syscall.EADDRINUSE)
		}
		return nil, fmt.Errorf("open listen port %d: %w", port, err)
	}
	defer ln.Close() // the file is a dup
	// Not ln.File(): a file from net's File() switches the socket to
	// blocking mode when os/exec takes its descriptor (File.Fd), and the
	// mode belongs to the socket, shared with every instance: their
	// accept(2) would then block, and an instance stopping while blocked
	// in accept could take a connection with it. os.NewFile of a
	// nonblocking descriptor leaves the mode alone.
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("open listen port %d: %w", port, err)
	}
	nfd := -1
	var dupErr error
	if err := raw.Control(func(fd uintptr) { nfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("open listen port %d: %w", port, err)
	}
	if dupErr != nil {
		return nil, fmt.Errorf("open listen port %d: dup: %w", port, dupErr)
	}
	// Passed in blocking mode, as systemd passes sockets by default; a Go
	// program (net.FileListener) makes it nonblocking itself. Nothing in
	// the worker changes the mode after this.
	if err := unix.SetNonblock(nfd, false); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("open listen port %d: %w", port, err)
	}
	return os.NewFile(uintptr(nfd), "listen:"+strconv.Itoa(port)), nil
}

// recoverListener takes the listening socket on port back from one of pids.
func recoverListener(port int, pids []int) (*os.File, error) {
	inodes := listeningInodes(port)
	for _, pid := range pids {
		for _, ino := range inodes {
			fd, ok := socketFD(pid, ino)
			if !ok {
				continue
			}
			pidfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue
			}
			nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
			unix.Close(pidfd)
			if err != nil {
				return nil, fmt.Errorf("listen port %d: take the socket back from executor pid %d: %w (needs Linux 5.6+ and ptrace rights over it)", port, pid, err)
			}
			unix.CloseOnExec(nfd)
			return os.NewFile(uintptr(nfd), "listen:"+strconv.Itoa(port)), nil
		}
	}
	return nil, fmt.Errorf("listen port %d is already in use by another process (no executor of this worker holds it): %w", port, syscall.EADDRINUSE)
}

// listeningInodes lists the inodes of TCP sockets listening on port.
func listeningInodes(port int) []uint64 {
	var out []uint64
	hexPort := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], hexPort) {
				continue
			}
			if ino, err := strconv.ParseUint(fs[9], 10, 64); err == nil && ino != 0 {
				out = append(out, ino)
			}
		}
		f.Close()
	}
	return out
}

// socketFD finds pid's descriptor for the socket with inode ino.
func socketFD(pid int, ino uint64) (int, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	want := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == want {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				return fd, true
			}
		}
	}
	return 0, false
}
