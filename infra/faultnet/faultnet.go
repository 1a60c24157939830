// Package faultnet is a fault-injecting TCP proxy for tests: put it on a
// network path between two real processes (a gateway and its broker, its
// Redis, another gateway) and cut, slow or heal that path while they run.
//
// A cut behaves like a partition, not like a crash: connections stay open
// and bytes written to them go nowhere until the path heals (then they
// arrive, as TCP would retransmit them), and new connections are accepted
// but carry nothing. Reset, unlike a cut, drops every connection at once.
package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection it accepts to a target address.
type Proxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	cut    bool
	delay  time.Duration
	healed chan struct{} // closed when a cut heals; replaced at each cut
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen starts a proxy on a free loopback port that forwards to target.
// An empty target may be set later with SetTarget, before the first
// connection (a gateway's proxy is its address in the route table, known
// before the gateway listens).
func Listen(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	healed := make(chan struct{})
	close(healed)
	p := &Proxy{ln: ln, target: target, healed: healed, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget sets where new connections go.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// Cut stops every byte on the path, both ways, until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut = true
		p.healed = make(chan struct{})
	}
}

// Heal ends a cut and any delay: held bytes flow again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = 0
	if p.cut {
		p.cut = false
		close(p.healed)
	}
}

// Delay holds every chunk of bytes d before passing it on, each way: a
// slow path whose bandwidth is not the limit.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Reset closes every connection through the proxy at once, as a peer
// that crashed or a middlebox that dropped them would. New connections
// are accepted as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Reset()
	p.Heal()
	p.wg.Wait()
}

// track adds c to the connections Reset closes, unless the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects c to the target and pipes both ways until either ends.
func (p *Proxy) serve(in net.Conn) {
	defer p.wg.Done()
	defer in.Close()
	if !p.track(in) {
		return
	}
	defer p.untrack(in)
	// A cut path accepts the connection but carries nothing, not even the
	// dial to the target: that happens once it heals.
	if !p.waitHealed(in) {
		return
	}
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	out, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer out.Close()
	if !p.track(out) {
		return
	}
	defer p.untrack(out)
	done := make(chan struct{}, 2)
	go func() { p.pipe(out, in); done <- struct{}{} }()
	go func() { p.pipe(in, out); done <- struct{}{} }()
	<-done
	_ = in.Close()
	_ = out.Close()
	<-done
}

// waitHealed waits while the path is cut; false if c closed meanwhile.
func (p *Proxy) waitHealed(c net.Conn) bool {
	for {
		p.mu.Lock()
		healed, cut := p.healed, p.cut
		p.mu.Unlock()
		if !cut {
			return true
		}
		select { // wake now and then to notice a close of c (Reset, Close)
		case <-healed:
		case <-time.After(50 * time.Millisecond):
		}
		p.mu.Lock()
		_, open := p.conns[c]
		p.mu.Unlock()
		if !open {
			return false
		}
	}
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst: a reader stamps each chunk as it arrives, a
// writer passes it on once its delay has passed and no cut holds it.
func (p *Proxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b: b[:n], at: time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		for range q { // let the reader end
		}
	}()
	for c := range q {
		for {
			p.mu.Lock()
			cut, healed, delay := p.cut, p.healed, p.delay
			p.mu.Unlock()
			if cut {
				select {
				case <-healed:
				case <-time.After(100 * time.Millisecond): // a Reset closes dst
				}
				if isClosed(dst) {
					return
				}
				continue
			}
			if wait := time.Until(c.at.Add(delay)); wait > 0 {
				time.Sleep(min(wait, 100*time.Millisecond))
				continue
			}
			break
		}
		if _, err := dst.Write(c.b); err != nil {
			_ = src.Close()
			return
		}
	}
}

// isClosed reports whether c was closed here (a Reset or Close).
func isClosed(c net.Conn) bool {
	err := c.SetWriteDeadline(time.Time{})
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}
