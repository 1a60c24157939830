package node

import (
	"context"
	"net"
	"net/http"
	"sync"

	"github.com/parley-chat/parley/infra/ratelimit"
)

// waitingConns bounds, per source address, the connections not inside a
// request's handler: new ones, idle keep-alive ones, and those sending
// the headers of their next request, which net/http buffers (up to
// HTTPServer.MaxHeaderBytes each) for up to HTTPServer.ReadHeaderTimeout
// — net/http tells a keep-alive connection's next request only once its
// headers are read, so an idle one counts from the moment it goes idle.
// Every other per-address limit counts a connection only once its headers
// are read, so without this one address could hold that buffer on as
// many connections as the process may open. A connection past the bound
// is closed as it is accepted, or as it goes idle. It does not wrap the
// connections it counts (the gateway writes to a hijacked *net.TCPConn
// with one writev), but follows them with the server's hooks.
type waitingConns struct {
	max int

	mu      sync.Mutex
	pending map[net.Conn]string // the connections counted, with their address
	per     map[string]int      // how many of them each address has
}

func newWaitingConns(bound int) *waitingConns {
	return &waitingConns{max: bound, pending: map[net.Conn]string{}, per: map[string]int{}}
}

// listener counts each connection ln accepts, and closes one whose
// address has max already.
func (f *waitingConns) listener(ln net.Listener) net.Listener { return waitingConnsListener{ln, f} }

type waitingConnsListener struct {
	net.Listener
	f *waitingConns
}

func (l waitingConnsListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.f.admit(c) {
			return c, nil
		}
		_ = c.Close()
	}
}

func (f *waitingConns) admit(c net.Conn) bool {
	ip := ratelimit.AddressKey(c.RemoteAddr().String())
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, counted := f.pending[c]; counted {
		return true
	}
	if f.per[ip] >= f.max {
		return false
	}
	f.per[ip]++
	f.pending[c] = ip
	return true
}

// done stops counting c (a request of it reached a handler, or it
// closed); it is harmless for a connection no longer counted.
func (f *waitingConns) done(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ip, ok := f.pending[c]
	if !ok {
		return
	}
	delete(f.pending, c)
	if f.per[ip]--; f.per[ip] <= 0 {
		delete(f.per, ip)
	}
}

type connKey struct{}

// hook sets s's hooks that count a keep-alive connection again as it
// goes idle (closing it past the bound), and end the count: a request's
// handler starting (found through the context the connection's requests
// carry), or the connection closing or being taken over.
func (f *waitingConns) hook(s *http.Server) {
	s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	s.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateIdle:
			if !f.admit(c) {
				_ = c.Close()
			}
		case http.StateClosed, http.StateHijacked:
			f.done(c)
		}
	}
	h := s.Handler
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			f.done(c)
		}
		h.ServeHTTP(w, r)
	})
}
