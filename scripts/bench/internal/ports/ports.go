// Package ports finds free loopback ports for the benchmarks' daemons.
package ports

import (
	"errors"
	"net"
	"strconv"
)

// Free returns a port free on 127.0.0.1 for both TCP and UDP (a gear
// master serves its API on TCP and gossips on UDP at the same number).
func Free() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port free for both TCP and UDP on 127.0.0.1 after 50 tries")
}
