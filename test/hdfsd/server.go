package hdfsd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/protobuf/proto"
)

// tcpServer accepts connections on 127.0.0.1 and runs handle for each in a
// goroutine it owns; close stops accepting, closes every open connection
// and waits for all handlers to return.
type tcpServer struct {
	name   string
	log    *slog.Logger
	ln     net.Listener
	handle func(ctx context.Context, conn net.Conn)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func listen(name string, log *slog.Logger, handle func(context.Context, net.Conn)) (*tcpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("hdfsd: %s listen on 127.0.0.1:0: %w", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &tcpServer{name: name, log: log.With("server", name), ln: ln, handle: handle,
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *tcpServer) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("accept failed", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.handle(s.ctx, conn)
		}()
	}
}

func (s *tcpServer) close() {
	s.mu.Lock()
	s.cancel()
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// readDelimited reads one varint-length-prefixed protobuf message.
func readDelimited(r *bufio.Reader, m proto.Message) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > 64<<20 {
		return fmt.Errorf("message of %d bytes is too large", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return err
	}
	return proto.Unmarshal(buf, m)
}

// appendDelimited appends m to b with a varint length prefix.
func appendDelimited(b []byte, m proto.Message) ([]byte, error) {
	enc, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(enc)))
	return append(b, enc...), nil
}

// takeDelimited decodes one varint-length-prefixed message from the front of
// b and returns the rest.
func takeDelimited(b []byte, m proto.Message) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, errors.New("truncated length-delimited message")
	}
	if err := proto.Unmarshal(b[k:k+int(n)], m); err != nil {
		return nil, err
	}
	return b[k+int(n):], nil
}
