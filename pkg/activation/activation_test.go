package activation

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as an activated server (ACTIVATION_HELPER=1): it
// serves on the passed socket and answers /slow after 300ms.
func TestMain(m *testing.M) {
	if os.Getenv("ACTIVATION_HELPER") == "1" {
		ls, err := Listeners()
		if err != nil || len(ls) != 1 {
			println("helper: listeners", len(ls), err)
			os.Exit(3)
		}
		ln, _ := Named("port1")
		if ln == nil || os.Getenv("LISTEN_FDS") != "" {
			println("helper: Named or unsetenv failed")
			os.Exit(4)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush() // the client knows it is in hand
				time.Sleep(300 * time.Millisecond)
			}
			io.WriteString(w, "pid="+strconv.Itoa(os.Getpid()))
		})}
		if err := Serve(context.Background(), srv, 5*time.Second, ls...); err != nil {
			println("helper:", err.Error())
			os.Exit(5)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestNotActivated(t *testing.T) {
	environ = func(k string) string { return map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"}[k] }
	defer func() { environ = os.Getenv }()
	ls, _, err := take()
	if err != nil || len(ls) != 0 {
		t.Fatalf("sockets meant for pid 1 taken: %v %v", ls, err)
	}
	environ = func(k string) string { return map[string]string{"LISTEN_PID": "x", "LISTEN_FDS": "1"}[k] }
	if _, _, err := take(); err == nil || !strings.Contains(err.Error(), "LISTEN_PID") {
		t.Fatalf("bad LISTEN_PID: %v", err)
	}
}

// TestServeFinishesRequestInHand: a server started with a passed socket
// serves on it; on SIGTERM it finishes the request in hand, and the socket
// (still held here, as the worker holds it) keeps accepting: a connection
// made after the stop waits in the backlog instead of being refused.
func TestServeFinishesRequestInHand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, _ := ln.(*net.TCPListener).File()
	defer f.Close()
	// The helper cannot know its pid before exec; a shell sets LISTEN_PID
	// to its own pid and execs in place, as gear's shim does.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0"`, os.Args[0])
	cmd.Env = append(os.Environ(), "ACTIVATION_HELPER=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=port1")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(url + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "pid="+strconv.Itoa(cmd.Process.Pid) {
				t.Fatalf("answered %q, want the helper's own pid %d", b, cmd.Process.Pid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := client.Get(url + "/slow") // returns with the headers: in hand
	if err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && !strings.HasPrefix(string(b), "pid=") {
			err = io.ErrUnexpectedEOF
		}
		slow <- err
	}()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("the request in hand was lost on SIGTERM: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper exit: %v", err)
	}
	// Nobody accepts now, but the socket is open: connecting succeeds.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("connection refused after the instance stopped: %v", err)
	}
	c.Close()
}

// closeNotifyListener tells when Serve closed it.
type closeNotifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeNotifyListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// TestServeAnswersAcceptedConnection: a connection accepted before the
// stop whose request arrives after it is still answered (net/http's
// Shutdown alone drops such a request, closing the connection unanswered).
func TestServeAnswersAcceptedConnection(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &closeNotifyListener{Listener: inner, closed: make(chan struct{})}
	accepted := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered") }),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepted <- struct{}{}
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, 5*time.Second, ln) }()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was never accepted")
	}
	cancel()
	select {
	case <-ln.closed: // the stop has begun
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not close its listener")
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || !strings.Contains(string(b), "answered") {
		t.Fatalf("the accepted connection got %q, %v; want the answer", b, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
