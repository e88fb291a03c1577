package emucluster

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// frontProxy plays the Service plus load balancer in front of a workload:
// it listens on the loopback address of the WebhookReceiver's externalURL
// and forwards each TCP connection, byte for byte, to one of the ready
// replicas. With no ready replica it closes the connection at once, so the
// sender sees an error and retries, as it would through a real load
// balancer with no endpoints.
type frontProxy struct {
	ln       net.Listener
	backends atomic.Pointer[[]string]
	cut      atomic.Bool // a network partition: refuse every connection
	next     atomic.Uint64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func newFrontProxy(addr string) (*frontProxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &frontProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	empty := []string{}
	p.backends.Store(&empty)
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// setBackends replaces the ready backends (host:port).
func (p *frontProxy) setBackends(b []string) { p.backends.Store(&b) }

func (p *frontProxy) addr() string { return p.ln.Addr().String() }

func (p *frontProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *frontProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *frontProxy) handle(c net.Conn) {
	p.track(c, true)
	defer p.track(c, false)
	defer c.Close()
	bs := *p.backends.Load()
	if len(bs) == 0 || p.cut.Load() {
		return
	}
	b := bs[p.next.Add(1)%uint64(len(bs))]
	up, err := net.DialTimeout("tcp", b, 2*time.Second)
	if err != nil {
		return
	}
	p.track(up, true)
	defer p.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// close stops listening and cuts every open connection.
func (p *frontProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
