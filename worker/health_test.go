package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/procs"
	"golang.org/x/sys/unix"
)

// TestECVFollowsLeaderAndDrain: /ecv says AVAILABLE only while the worker
// reaches a leader and is not draining; an executor's page also goes
// UNAVAILABLE when its app is disabled, without touching the executor.
func TestECVFollowsLeaderAndDrain(t *testing.T) {
	w := &Worker{id: "w1", execs: map[string]*executor{}}
	e := newExecutor(w, cluster.Assignment{Executor: cluster.Executor{ID: "a1.web.0"}}, nil)
	e.state = cluster.Running
	w.execs[e.id] = e
	mux := w.serveMux()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	check := func(path string, code int, want string) {
		t.Helper()
		gotCode, body := get(path)
		if gotCode != code || !strings.Contains(body, want) {
			t.Fatalf("GET %s = %d %q, want %d containing %q", path, gotCode, body, code, want)
		}
	}
	check("/ecv", http.StatusServiceUnavailable, "status=UNAVAILABLE&ServeTraffic=false&reason=no_leader")
	w.health.connected.Store(true)
	check("/ecv", http.StatusOK, "status=AVAILABLE&ServeTraffic=true&worker=w1")
	check("/ecv/a1.web.0", http.StatusOK, "status=AVAILABLE&ServeTraffic=true&executor=a1.web.0")
	e.a.Disabled = true
	check("/ecv/a1.web.0", http.StatusServiceUnavailable, "reason=disabled")
	check("/ecv", http.StatusOK, "status=AVAILABLE")
	e.a.Disabled = false
	e.health = cluster.HealthFailing
	check("/ecv/a1.web.0", http.StatusServiceUnavailable, "reason=unhealthy")
	e.health = cluster.HealthPassing
	w.SetDraining(true)
	check("/ecv", http.StatusServiceUnavailable, "reason=draining")
	check("/ecv/a1.web.0", http.StatusServiceUnavailable, "reason=draining")
	check("/ecv/nope", http.StatusServiceUnavailable, "reason=unknown_executor")
}

func TestRunCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = rw.Write([]byte("status=AVAILABLE"))
		case "/moved":
			http.Redirect(rw, r, "/elsewhere", http.StatusFound)
		default:
			http.Error(rw, "down", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	host, port := addr[:strings.LastIndexByte(addr, ':')], 0
	for _, c := range addr[strings.LastIndexByte(addr, ':')+1:] {
		port = port*10 + int(c-'0')
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		h    cluster.Health
		want string // "" = passes
	}{
		{"http 200", cluster.Health{HTTP: "/ok"}, ""},
		{"http body", cluster.Health{HTTP: "/ok", Body: "AVAILABLE"}, ""},
		{"http body missing", cluster.Health{HTTP: "/ok", Body: "DISABLED"}, "does not contain"},
		{"http 3xx", cluster.Health{HTTP: "/moved"}, ""},
		{"http 500", cluster.Health{HTTP: "/bad"}, "status 500"},
		{"tcp", cluster.Health{TCP: true}, ""},
		{"command ok", cluster.Health{Command: []string{"/bin/sh", "-c", "exit 0"}}, ""},
		{"command fails", cluster.Health{Command: []string{"/bin/sh", "-c", "echo nope; exit 2"}}, "nope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := runCheck(context.Background(), tt.h.WithDefaults(), host, port, procs.Spec{Dir: dir})
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("runCheck = %v, want %q", err, tt.want)
			}
		})
	}
	srv.Close()
	if err := runCheck(context.Background(), cluster.Health{TCP: true, Timeout: time.Second}, host, port, procs.Spec{}); err == nil {
		t.Fatal("tcp check on a closed port passed")
	}
}

// TestListenerModeUntouched: handing the worker's copy of a listen socket
// to a child (os/exec calls File.Fd) does not change the socket's
// blocking mode, which it shares with every instance: net's File() did,
// switching a nonblocking socket the instances use to blocking, so their
// accept(2) blocked.
func TestListenerModeUntouched(t *testing.T) {
	var l listeners
	f, err := l.acquire("127.0.0.1", freePortForTest(t), "1.web", "1.web.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.closeAll()
	// The first instance (a Go program) makes the socket nonblocking.
	raw, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.Control(func(fd uintptr) { _ = unix.SetNonblock(int(fd), true) })
	fd := f.Fd() // what os/exec does when it starts the next instance
	nb, err := unixIsNonblock(int(fd))
	if err != nil || !nb {
		t.Fatalf("after Fd() the socket is nonblocking=%v (%v), want it left nonblocking", nb, err)
	}
	// Another process group may not share it on this worker.
	p, _ := strconv.Atoi(f.Name()[len("listen:"):])
	if _, err := l.acquire("127.0.0.1", p, "2.other", "2.other.0", nil); !errors.Is(err, errListenBusy) {
		t.Fatalf("a second group on the same listen port: %v, want errListenBusy", err)
	}
}

func unixIsNonblock(fd int) (bool, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return flags&unix.O_NONBLOCK != 0, err
}

func freePortForTest(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
