package main

import (
	"log"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// pausable is a member's transport (memberlist's own UDP+TCP one) that can
// be frozen for a while, as a process stopped by a GC pause, a VM hiccup
// or SIGSTOP would be: nothing it sends leaves (its probe and gossip
// goroutines block on the send, as they would not run), and what arrives
// waits in the socket, delivered on resume. memberlist's timers inside the
// frozen member keep running, unlike a real pause; its probes still cannot
// complete, since their pings do not leave and their acks are not read.
type pausable struct {
	*memberlist.NetTransport
	mu      sync.Mutex
	resume  chan struct{} // closed when not paused
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
}

func newPausable(ip string) (*pausable, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{ip}, BindPort: 0, Logger: log.New(countLog{}, "", 0)})
	if err != nil {
		return nil, err
	}
	p := &pausable{NetTransport: nt, resume: make(chan struct{}), packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	close(p.resume)
	go func() {
		for {
			select {
			case pk := <-nt.PacketCh():
				if !p.wait() {
					return
				}
				pk.Timestamp = time.Now() // read after the pause, as a stopped process would
				select {
				case p.packets <- pk:
				case <-p.done:
					return
				}
			case <-p.done:
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case c := <-nt.StreamCh():
				if !p.wait() {
					return
				}
				select {
				case p.streams <- c:
				case <-p.done:
					_ = c.Close()
					return
				}
			case <-p.done:
				return
			}
		}
	}()
	return p, nil
}

// pause freezes the member for d (returns at once).
func (p *pausable) pause(d time.Duration) {
	p.mu.Lock()
	ch := make(chan struct{})
	p.resume = ch
	p.mu.Unlock()
	time.AfterFunc(d, func() { close(ch) })
}

// wait blocks while the member is paused; false if it shut down.
func (p *pausable) wait() bool {
	p.mu.Lock()
	ch := p.resume
	p.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-p.done:
		return false
	}
}

func (p *pausable) PacketCh() <-chan *memberlist.Packet { return p.packets }
func (p *pausable) StreamCh() <-chan net.Conn           { return p.streams }

func (p *pausable) WriteTo(b []byte, addr string) (time.Time, error) {
	p.wait()
	return p.NetTransport.WriteTo(b, addr)
}

func (p *pausable) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	p.wait()
	return p.NetTransport.WriteToAddress(b, a)
}

func (p *pausable) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	p.wait()
	return p.NetTransport.DialTimeout(addr, timeout)
}

func (p *pausable) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	p.wait()
	return p.NetTransport.DialAddressTimeout(a, timeout)
}

func (p *pausable) Shutdown() error {
	// The transport first, while the forwarders still drain its
	// channels: its reader goroutines may be blocked handing over a packet
	// read before the close, and its Shutdown waits for them.
	err := p.NetTransport.Shutdown()
	p.once.Do(func() { close(p.done) })
	return err
}
