package netmux

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRoutesByPrefix(t *testing.T) {
	m, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	raft := m.Protocol(Raft)
	gossip := m.Protocol(Gossip)
	httpLn := m.HTTP()
	go func() { _ = m.Serve() }()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "http") })}
	go func() { _ = srv.Serve(httpLn) }()
	defer srv.Close()

	echo := func(ln net.Listener, tag string) {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		io.WriteString(c, tag+":"+string(buf))
	}
	go echo(raft, "raft")
	go echo(gossip, "gossip")

	for _, tc := range []struct{ prefix, want string }{{Raft, "raft:hello"}, {Gossip, "gossip:hello"}} {
		c, err := Dial(context.Background(), m.Addr().String(), tc.prefix, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "hello")
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != tc.want {
			t.Fatalf("prefix %s: got %q, want %q (the prefix must be stripped)", tc.prefix, got, tc.want)
		}
	}
	resp, err := http.Get("http://" + m.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "http" {
		t.Fatalf("http got %q", b)
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	m, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln := m.Protocol(Raft)
	go func() { _ = m.Serve() }()
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
}

func TestBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), "already in use by another process") {
		t.Fatalf("got %v", err)
	}
}
