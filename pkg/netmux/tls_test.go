package netmux

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/tlsconf"
	"github.com/gear-run/gear/pkg/tlsconf/tlstest"
)

// syncBuf is a log sink tests read while the mux writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func loadNode(t *testing.T, ca *tlstest.CA, name string) *tlsconf.Node {
	t.Helper()
	p := ca.Issue(name, "127.0.0.1")
	n, err := tlsconf.LoadNode(tlsconf.Files{Cert: p.Cert, Key: p.Key, CA: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTLSPerProtocol(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	other := tlstest.NewCA(t, "other")
	node := loadNode(t, ca, "node")
	stranger := loadNode(t, other, "stranger")
	logs := &syncBuf{}
	m, err := ListenTLS("127.0.0.1:0", node.Server, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	raftLn := m.Protocol(Raft)
	httpLn := m.HTTP()
	go func() { _ = m.Serve() }()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			io.WriteString(w, "no-tls")
			return
		}
		io.WriteString(w, "tls certs="+strings.Repeat("x", len(r.TLS.VerifiedChains)))
	})}
	go func() { _ = srv.Serve(httpLn) }()
	defer srv.Close()
	go func() {
		for {
			c, err := raftLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err == nil {
					io.WriteString(c, "raft:"+string(buf))
				}
			}()
		}
	}()
	addr := m.Addr().String()

	t.Run("stream with the cluster's cert", func(t *testing.T) {
		c, err := DialTLS(context.Background(), addr, Raft, 2*time.Second, node.Client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "hello")
		got, _ := io.ReadAll(c)
		if string(got) != "raft:hello" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("stream without a client cert is refused", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: node.Client.RootCAs}
		c, err := DialTLS(context.Background(), addr, Raft, 2*time.Second, cfg)
		if err == nil {
			// TLS 1.3: the client learns of the refusal at its first read.
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "hello")
			_, err = io.ReadAll(c)
			c.Close()
		}
		if err == nil {
			t.Fatal("a raft stream without a client certificate was served")
		}
	})
	t.Run("stream with another CA's cert is refused", func(t *testing.T) {
		cfg := stranger.Client.Clone()
		cfg.RootCAs = node.Client.RootCAs
		c, err := DialTLS(context.Background(), addr, Raft, 2*time.Second, cfg)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "hello")
			_, err = io.ReadAll(c)
			c.Close()
		}
		if err == nil {
			t.Fatal("a raft stream with another CA's certificate was served")
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(logs.String(), "refused a raft stream") {
			if time.Now().After(deadline) {
				t.Fatalf("the refusal was not logged; log:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "level=WARN") {
			t.Fatalf("the refusal is not a warning:\n%s", logs.String())
		}
	})
	t.Run("https without a client cert (CLI with the token)", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: node.Client.RootCAs}}}
		resp, err := hc.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "tls certs=" {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("https with the node's client cert is verified", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: node.Client}}
		resp, err := hc.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "tls certs=x" {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("https with another CA's client cert is not verified", func(t *testing.T) {
		// Go's client offers no certificate the server's CA list does
		// not name, so the request comes without one: no verified chain.
		cfg := stranger.Client.Clone()
		cfg.RootCAs = node.Client.RootCAs
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := hc.Get("https://" + addr + "/")
		if err != nil {
			return // refused outright: fine too
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "tls certs=" {
			t.Fatalf("a client certificate from another CA was verified: %q", b)
		}
	})
	t.Run("plaintext http gets a clear 400", func(t *testing.T) {
		hc := &http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Get("http://" + addr + "/api/v1/apps")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "use https://") || !strings.Contains(string(b), "-ca") {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
	})
	t.Run("plaintext garbage does not hang", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "x")
		b, err := io.ReadAll(c)
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 400") {
			t.Fatalf("got %q, %v", b, err)
		}
	})
}
