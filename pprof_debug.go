//go:build gearpprof

// A profiling hook for benchmarks, only in a binary built with
// `go build -tags gearpprof` (scripts/bench/scale -pprof does): with
// GEAR_PPROF_DIR set, the process serves net/http/pprof on a free port of
// 127.0.0.1 and writes that address to $GEAR_PPROF_DIR/<command>[-<ip>].addr.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"path/filepath"
)

func init() {
	dir := os.Getenv("GEAR_PPROF_DIR")
	if dir == "" || len(os.Args) < 2 {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	name := os.Args[1]
	for i, a := range os.Args {
		if a == "-ip" && i+1 < len(os.Args) {
			name += "-" + os.Args[i+1]
		}
	}
	_ = os.WriteFile(filepath.Join(dir, name+".addr"), []byte(ln.Addr().String()), 0o644)
	go func() { fmt.Fprintln(os.Stderr, http.Serve(ln, nil)) }()
}
