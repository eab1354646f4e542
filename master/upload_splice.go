package master

// A bundle upload at disk speed: the master takes the connection over
// from the HTTP server and lets the kernel move the body from the socket
// into the jar store's file (splice(2)), hashing the file behind it.
// Through net/http's body reader every byte would be copied into user
// space and out again (about 1 s of CPU per GiB more).

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/netmux"
)

// spliceable says whether an upload can take the spliced path: plaintext
// HTTP/1.x (a TLS connection decrypts in user space anyway), a body of a
// declared length (not chunked), and a jar store of files on this machine.
func (m *Master) spliceable(r *http.Request) bool {
	return r.TLS == nil && r.ProtoMajor == 1 && r.ContentLength > 0 &&
		len(r.TransferEncoding) == 0 && m.blobs.Direct(r.Context())
}

// uploadSpliced receives an upload on the hijacked connection and answers
// it there (then closes the connection). It returns false, having done
// nothing, when the connection cannot be taken over; the caller then
// streams the body as usual.
func (m *Master) uploadSpliced(w http.ResponseWriter, r *http.Request, name string, kind bundle.Kind, want string) bool {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	start := time.Now()
	size := r.ContentLength
	// The server may have left deadlines on the connection; the upload
	// has none of its own (like the streamed path) but ends with ctx.
	_ = conn.SetDeadline(time.Time{})
	ctx := r.Context()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		_, _ = io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	// What the server read ahead of the handler is the start of the body.
	head, _ := brw.Reader.Peek(min(brw.Reader.Buffered(), int(min(size, 1<<30))))
	var src io.Reader = conn
	if tc, ok := netmux.TCPConn(conn); ok {
		src = tc // *net.TCPConn: (*os.File).ReadFrom splices from it
	}
	follow, inspected := m.inspectWhileReceived(name, kind)
	digest, n, err := m.blobs.PutSizedFollow(ctx, head, src, size, want, follow)
	m.stored(name, digest, n, start, "splice", err)
	if err == nil && inspected != nil {
		inspected(digest)
	}

	resp := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
	if err != nil {
		writeError(resp, err)
	} else {
		writeJSON(resp, cluster.Bundle{Digest: digest, Size: n, Kind: kind.BundleKind(), Name: name})
	}
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if werr := resp.send(conn); werr != nil {
		m.log.Warn("answering a bundle upload failed", "name", name, "err", werr)
		return true
	}
	if err != nil && n < size {
		// The client may still be sending: let it finish (briefly) so
		// that it reads the answer instead of a reset.
		if tc, ok := netmux.TCPConn(conn); ok {
			_ = tc.CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, size-n))
	}
	return true
}

// bufferedResponse collects an answer (writeJSON, writeError) to send on
// a hijacked connection.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }

// send writes the answer as an HTTP/1.1 response that closes the
// connection.
func (b *bufferedResponse) send(c net.Conn) error {
	b.header.Set("Content-Length", strconv.Itoa(b.body.Len()))
	b.header.Set("Connection", "close")
	var out bytes.Buffer
	out.WriteString("HTTP/1.1 " + strconv.Itoa(b.code) + " " + http.StatusText(b.code) + "\r\n")
	if err := b.header.Write(&out); err != nil {
		return err
	}
	out.WriteString("\r\n")
	out.Write(b.body.Bytes())
	_, err := c.Write(out.Bytes())
	if err != nil {
		return errors.Join(errors.New("write the answer"), err)
	}
	return nil
}
