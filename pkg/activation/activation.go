// Package activation is the app side of gear's listen = [...]: it takes
// the listening sockets a gear worker (or systemd) passes by socket
// activation, and serves HTTP on them with a graceful stop that finishes
// the requests in hand on SIGTERM.
//
// The protocol (sd_listen_fds(3)): LISTEN_PID is the pid of the process
// the sockets are for, LISTEN_FDS how many there are, starting at fd 3,
// and LISTEN_FDNAMES their names, separated by ':'. gear names them
// "port8080" and so on, in the order of listen = [...].
//
// A server that uses it keeps working without gear: Listen falls back to
// binding an address itself.
//
// It is not a process manager: restarts, health checks and the socket's
// life are the worker's (see worker/listen.go).
package activation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// firstFD is the first passed descriptor (SD_LISTEN_FDS_START).
const firstFD = 3

var (
	once    sync.Once
	lns     []net.Listener
	names   []string
	lnsErr  error
	getpid  = os.Getpid
	environ = os.Getenv
)

// Listeners returns the listeners passed to this process, in order, or
// none when the process was not started by socket activation (LISTEN_PID
// is unset or names another process). It reads the environment once and
// unsets the LISTEN_* variables, so child processes do not take them for
// theirs; later calls return the same listeners.
func Listeners() ([]net.Listener, error) {
	once.Do(func() { lns, names, lnsErr = take() })
	return lns, lnsErr
}

// Named returns the passed listener with this name (e.g. "port8080"),
// or nil.
func Named(name string) (net.Listener, error) {
	ls, err := Listeners()
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		if n == name && i < len(ls) {
			return ls[i], nil
		}
	}
	return nil, nil
}

func take() ([]net.Listener, []string, error) {
	pidStr, fdsStr := environ("LISTEN_PID"), environ("LISTEN_FDS")
	if pidStr == "" || fdsStr == "" {
		return nil, nil, nil
	}
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return nil, nil, fmt.Errorf("activation: LISTEN_PID=%q is not a pid", pidStr)
	}
	if pid != getpid() {
		return nil, nil, nil // meant for another process (e.g. our parent)
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 {
		return nil, nil, fmt.Errorf("activation: LISTEN_FDS=%q is not a count of descriptors", fdsStr)
	}
	var fdNames []string
	if s := environ("LISTEN_FDNAMES"); s != "" {
		fdNames = strings.Split(s, ":")
	}
	var out []net.Listener
	var outNames []string
	for i := range n {
		fd := firstFD + i
		syscall.CloseOnExec(fd)
		name := "fd" + strconv.Itoa(fd)
		if i < len(fdNames) {
			name = fdNames[i]
		}
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds a dup
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, nil, fmt.Errorf("activation: descriptor %d (%s) is not a listening socket: %w", fd, name, err)
		}
		out = append(out, ln)
		outNames = append(outNames, name)
	}
	return out, outNames, nil
}

// Listen returns the first passed listener, or, when none was passed, a
// new one bound to addr (e.g. ":" + $PORT).
func Listen(addr string) (net.Listener, error) {
	ls, err := Listeners()
	if err != nil {
		return nil, err
	}
	if len(ls) > 0 {
		return ls[0], nil
	}
	return net.Listen("tcp", addr)
}

// Serve serves srv on every listener until ctx ends or the process gets
// SIGTERM or SIGINT. Then it stops accepting (the socket stays open in the
// worker and the other instances, so no connection is refused meanwhile),
// and waits up to grace for the requests in hand to finish. It returns nil
// after a clean stop.
//
// It does not simply call http.Server.Shutdown: a request read after
// Shutdown began is dropped by net/http (the connection is closed without
// an answer), and a connection accepted just before the signal usually has
// its request still unread. So Serve first closes the listeners, waits
// until every accepted connection has its first request read (or grace/2
// passed for one that sends nothing), and only then shuts down. srv's own
// ConnState hook, if any, is still called.
func Serve(ctx context.Context, srv *http.Server, grace time.Duration, listeners ...net.Listener) error {
	if len(listeners) == 0 {
		return errors.New("activation: Serve needs at least one listener")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var mu sync.Mutex
	fresh := map[net.Conn]bool{} // accepted, first request not read yet
	orig := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		if st == http.StateNew {
			fresh[c] = true
		} else {
			delete(fresh, c)
		}
		mu.Unlock()
		if orig != nil {
			orig(c, st)
		}
	}
	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case err := <-errc:
		// A listener failed on its own: stop the rest.
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("activation: serve: %w", err)
	case <-ctx.Done():
	}
	deadline := time.Now().Add(grace)
	for _, ln := range listeners {
		ln.Close() // only this process's descriptor: the socket stays open
	}
	for range listeners {
		<-errc // each Serve returns once its Accept fails; accepted conns are tracked by then
	}
	firstReads := time.Now().Add(grace / 2)
	for time.Now().Before(firstReads) {
		mu.Lock()
		n := len(fresh)
		mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("activation: graceful stop: %w", err)
	}
	return nil
}
