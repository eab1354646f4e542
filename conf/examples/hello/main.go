// Command hello is gear's example server: it serves HTTP on $PORT (or, with
// listen = [PORT] in gear-app.conf, on the socket the worker passes, and
// then also on its own $PORT for health checks), says which executor it is
// and which cores it may run on, and shuts down gracefully on SIGTERM,
// finishing the requests in hand (pkg/activation).
// conf/examples/hello/gear-app.conf runs two of it; conf/examples/web runs
// four on one shared port.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/activation"
)

func cpusAllowed() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	who := fmt.Sprintf("executor %s (app %s) on worker %s, pid %d, cores %s (GEAR_CPUS=%q)",
		os.Getenv("GEAR_EXECUTOR_ID"), os.Getenv("GEAR_APP_ID"), os.Getenv("GEAR_WORKER_ID"), os.Getpid(), cpusAllowed(), os.Getenv("GEAR_CPUS"))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 && d < time.Minute {
			time.Sleep(d) // ?sleep=200ms: a slow request, to watch a graceful stop finish it
		}
		fmt.Fprintf(w, "hello from %s\n", who)
	})}
	passed, err := activation.Listeners()
	if err != nil {
		log.Fatalf("hello: %v", err)
	}
	// Its own $PORT always: the only address that reaches this instance
	// when the passed socket is shared (health checks use it).
	own, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatalf("hello: port %s: %v", port, err)
	}
	listeners := append(passed, own)
	for _, ln := range listeners {
		log.Printf("hello: %s listening on %s", who, ln.Addr())
	}
	grace := 5 * time.Second
	if s, err := strconv.Atoi(os.Getenv("HELLO_GRACE_SECONDS")); err == nil && s > 0 {
		grace = time.Duration(s) * time.Second
	}
	if err := activation.Serve(context.Background(), srv, grace, listeners...); err != nil {
		log.Fatalf("hello: %v", err)
	}
	log.Printf("hello: stopped gracefully")
}
