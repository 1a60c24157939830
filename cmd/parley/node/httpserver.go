package node

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// HTTPServer bounds the node's HTTP server: every request to /ws, /api/v1,
// /console/, /internal/link and the ops endpoints. WebSocket connections
// (clients and cluster links) are not affected once upgraded: net/http
// clears a connection's deadlines when the upgrade hijacks it, and the
// gateway keeps its own heartbeat and write deadlines from then on.
type HTTPServer struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (at most
	// 128 KiB for the HTTP API). Default 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a reply, from the end of the request's headers to
	// the last byte written, so that a client that doesn't read cannot hold
	// its reply in memory longer. Default 60s, which leaves room for a
	// sync's wait for a read model (up to 5 s) and for a 30-second pprof
	// profile. The console's event stream extends it write by write.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 30s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header lines. Default 32 KiB:
	// tokens are a few hundred bytes, but browsers send every cookie of
	// localhost to the console.
	MaxHeaderBytes int
}

func (c *HTTPServer) setDefaults() {
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 32 << 10
	}
}

// validate reports the problems of c; it runs after setDefaults.
func (c HTTPServer) validate() []error {
	var errs []error
	for name, d := range map[string]time.Duration{"read header": c.ReadHeaderTimeout, "read": c.ReadTimeout, "write": c.WriteTimeout, "idle": c.IdleTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("the http %s timeout cannot be negative, got %s", name, d))
		}
	}
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, errors.New("the http max header bytes cannot be negative"))
	}
	return errs
}

// server is the http.Server serving h with these bounds.
func (c HTTPServer) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}
