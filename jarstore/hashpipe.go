package jarstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
)

// A HashReader's memory: pipeBufs buffers of pipeBufSize, whatever the
// stream's size. Four buffers let reading the source, hashing and the
// consumer's write each work on their own chunk with one spare.
const (
	pipeBufSize = 1 << 20
	pipeBufs    = 4
)

// chunk is one buffer in flight. Both the hasher and the consumer hold it
// until they are done with it (refs); the last one returns it to the pool.
type chunk struct {
	buf  []byte
	n    int
	err  error // the source's error after buf[:n] (io.EOF at its end)
	refs atomic.Int32
}

// HashReader computes the SHA-256 digest of a stream while passing it on,
// with reading the source, hashing and the consumer's writing overlapped:
// one goroutine reads the source ahead into a small pool of buffers,
// another hashes each buffer while the consumer copies the same buffer on.
// On a machine with a spare core a store write then costs about as much as
// a plain copy, instead of copy + hash.
//
// It is not a general read-ahead buffer: memory is fixed (4 MiB), and the
// stream is delivered in order, unchanged.
//
// Read (or WriteTo) returns the source's data and then its error; at the
// end of the stream it returns io.EOF only after the whole stream is
// hashed, or ErrTooLarge once more than the limit arrived, or
// ErrDigestMismatch if a digest was expected and the stream does not match
// it. Close must be called (also after an error) to stop the goroutines; it
// waits for a Read of the source in progress to return and never closes the
// source.
type HashReader struct {
	want     string // expected digest, "" for none
	mismatch func(got string, n int64) error

	free   chan *chunk
	toHash chan *chunk
	toRead chan *chunk
	stop   chan struct{}
	hashed chan struct{} // closed once the last chunk is hashed
	wg     sync.WaitGroup
	once   sync.Once

	h      hash.Hash // owned by the hasher until hashed is closed
	size   int64     // bytes hashed; read after hashed is closed
	endErr error     // the source's final error; read after hashed is closed

	// holdAt >= 0: the stream is expected to be holdAt bytes long, and its
	// last byte is delivered only once the whole stream is verified, so a
	// consumer (an HTTP download with that Content-Length) never receives
	// a complete corrupt stream.
	holdAt    int64
	delivered int64
	verified  bool

	cur *chunk // consumer side
	off int
	err error
}

// NewHashReader starts reading src ahead. maxSize < 0 means no limit; want
// is the digest the stream must have ("" when unknown).
func NewHashReader(src io.Reader, maxSize int64, want string) *HashReader {
	return newHashReader(src, maxSize, want, pipeBufSize, -1, func(got string, n int64) error {
		return fmt.Errorf("%w: declared %s, received %d bytes hashing to %s: upload again", ErrDigestMismatch, want, n, got)
	})
}

// newHashReader is NewHashReader with the buffer size, the expected size
// whose last byte is held back until verified (-1: none; see holdAt) and
// the error for a digest mismatch chosen by the caller.
func newHashReader(src io.Reader, maxSize int64, want string, bufSize int, holdAt int64, mismatch func(got string, n int64) error) *HashReader {
	if want == "" {
		holdAt = -1
	}
	p := &HashReader{
		want:     want,
		holdAt:   holdAt,
		mismatch: mismatch,
		free:     make(chan *chunk, pipeBufs),
		toHash:   make(chan *chunk, pipeBufs),
		toRead:   make(chan *chunk, pipeBufs),
		stop:     make(chan struct{}),
		hashed:   make(chan struct{}),
		h:        sha256.New(),
	}
	for range pipeBufs {
		p.free <- &chunk{buf: make([]byte, bufSize)}
	}
	p.wg.Add(2)
	go p.readLoop(src, maxSize)
	go p.hashLoop()
	return p
}

func (p *HashReader) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		p.free <- c // never blocks: the pool has room for every chunk
	}
}

func (p *HashReader) readLoop(src io.Reader, maxSize int64) {
	defer p.wg.Done()
	var total int64
	for {
		var c *chunk
		select {
		case c = <-p.free:
		case <-p.stop:
			return
		}
		n, err := fill(src, c.buf)
		total += int64(n)
		if maxSize >= 0 && total > maxSize {
			err = fmt.Errorf("%w: more than %d bytes (raise the upload limit, e.g. the master's max bundle size, if this bundle is legitimate)", ErrTooLarge, maxSize)
		}
		c.n, c.err = n, err
		c.refs.Store(2)
		// Both channels have room for every chunk, so these sends never
		// wait; the selects only keep that obvious.
		select {
		case p.toHash <- c:
		case <-p.stop:
			return
		}
		select {
		case p.toRead <- c:
		case <-p.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// fill reads into buf until it is full or src fails, and returns src's own
// error unchanged (unlike io.ReadFull, which turns an early io.EOF into
// io.ErrUnexpectedEOF: a cut HTTP body reports that itself, and must never
// pass for a clean end).
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := src.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (p *HashReader) hashLoop() {
	defer p.wg.Done()
	for {
		select {
		case c := <-p.toHash:
			p.h.Write(c.buf[:c.n])
			p.size += int64(c.n)
			last := c.err != nil
			if last {
				p.endErr = c.err
			} else if p.holdAt >= 0 && p.size > p.holdAt {
				// Longer than expected: corrupt, whatever follows. Stop
				// here, as the consumer may be waiting for the verdict
				// while holding the buffers the rest would need.
				last, p.endErr = true, errLonger
			}
			p.release(c)
			if last {
				close(p.hashed)
				return
			}
		case <-p.stop:
			return
		}
	}
}

// next returns the chunk being consumed, waiting for the next one.
func (p *HashReader) next() *chunk {
	if p.cur == nil {
		p.cur, p.off = <-p.toRead, 0
	}
	return p.cur
}

// errLonger ends the hashing of a stream longer than holdAt.
var errLonger = errors.New("jarstore: stream longer than expected")

// check waits until the whole stream is hashed and returns the mismatch
// error if it ended cleanly with the wrong digest (other ends are reported
// in order, after their data).
func (p *HashReader) check() error {
	<-p.hashed
	if p.endErr == errLonger {
		return p.mismatch(p.Digest()+" (first bytes only)", p.size)
	}
	if p.endErr == io.EOF && p.want != "" {
		if got := p.Digest(); got != p.want {
			return p.mismatch(got, p.size)
		}
	}
	return nil
}

// span returns the end of what may be delivered from the current chunk
// now: all of it, or all but the held-back last byte (see holdAt).
func (p *HashReader) span(c *chunk) (int, error) {
	if p.holdAt < 0 || p.verified {
		return c.n, nil
	}
	allowed := p.holdAt - 1 - p.delivered
	if int64(c.n-p.off) <= allowed {
		return c.n, nil
	}
	if allowed > 0 {
		return p.off + int(allowed), nil
	}
	if err := p.check(); err != nil {
		p.err = err
		return 0, err
	}
	p.verified = true
	return c.n, nil
}

// done finishes the current chunk and returns the error to report after
// its data (nil if the stream goes on).
func (p *HashReader) done(c *chunk) error {
	err := c.err
	p.release(c)
	p.cur = nil
	if err == io.EOF {
		if cerr := p.check(); cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		p.err = err
	}
	return err
}

// Read implements io.Reader.
func (p *HashReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if len(b) == 0 {
		return 0, nil
	}
	c := p.next()
	end, err := p.span(c)
	if err != nil {
		return 0, err
	}
	n := copy(b, c.buf[p.off:end])
	p.off += n
	p.delivered += int64(n)
	if p.off < c.n {
		return n, nil
	}
	return n, p.done(c)
}

// WriteTo implements io.WriterTo: io.Copy then writes straight from the
// pipe's buffers, without another copy. It returns nil at a good end of
// the stream.
func (p *HashReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for p.err == nil {
		c := p.next()
		end, err := p.span(c)
		if err != nil {
			return total, err
		}
		n, werr := w.Write(c.buf[p.off:end])
		p.off += n
		p.delivered += int64(n)
		total += int64(n)
		if werr != nil {
			return total, werr
		}
		if p.off < end {
			return total, io.ErrShortWrite
		}
		if p.off < c.n {
			continue // the held-back byte: verify, then deliver it
		}
		if err := p.done(c); err != nil && err != io.EOF {
			return total, err
		}
	}
	if p.err == io.EOF {
		return total, nil
	}
	return total, p.err
}

// Digest returns "sha256:<hex>" of the whole stream. Valid once Read
// returned io.EOF (or WriteTo returned nil); "" before.
func (p *HashReader) Digest() string {
	select {
	case <-p.hashed:
		return digestPrefix + hex.EncodeToString(p.h.Sum(nil))
	default:
		return ""
	}
}

// Size returns the number of bytes hashed. Valid with Digest.
func (p *HashReader) Size() int64 {
	select {
	case <-p.hashed:
		return p.size
	default:
		return 0
	}
}

// Close stops the goroutines and waits for them. It does not close the
// source. Safe to call more than once.
func (p *HashReader) Close() error {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
	})
	return nil
}
