// Command tcpserver is the restart benchmark's server: it listens on
// 127.0.0.1:PORT and answers every connection with its pid. It can be told
// to fail at start (to show crash-loop handling) and records each start.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1")
	crash := flag.Bool("crash", false, "exit 1 at once (a program that cannot start)")
	failUntil := flag.Int64("fail-until", 0, "exit 1 at once while the time is before this unix time in ms")
	starts := flag.String("starts", "", "append a line (unix ms) to this file at every start")
	flag.Parse()

	if *starts != "" {
		if f, err := os.OpenFile(*starts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintln(f, time.Now().UnixMilli())
			f.Close()
		}
	}
	if *crash || time.Now().UnixMilli() < *failUntil {
		fmt.Fprintln(os.Stderr, "tcpserver: failing on purpose")
		os.Exit(1)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpserver:", err)
		os.Exit(1)
	}
	reply := []byte(strconv.Itoa(os.Getpid()) + "\n")
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		c.Write(reply)
		c.Close()
	}
}
