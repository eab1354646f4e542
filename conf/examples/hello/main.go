// Command hello is gear's example server: it serves HTTP on $PORT, says
// which executor it is and which cores it may run on, and shuts down
// gracefully on SIGTERM. conf/examples/hello/gear-app.conf runs two of it.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
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
	who := fmt.Sprintf("executor %s (app %s) on worker %s, cores %s (GEAR_CPUS=%q)",
		os.Getenv("GEAR_EXECUTOR_ID"), os.Getenv("GEAR_APP_ID"), os.Getenv("GEAR_WORKER_ID"), cpusAllowed(), os.Getenv("GEAR_CPUS"))
	srv := &http.Server{Addr: ":" + port, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", who)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		log.Printf("hello: %s listening on :%s", who, port)
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatalf("hello: %v", err)
		}
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Printf("hello: SIGTERM, shutting down gracefully")
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return
		case <-tick.C:
			log.Printf("hello: still serving on :%s", port)
		}
	}
}
