package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/parley-chat/parley/infra/ratelimit"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// RateLimit bounds the requests of one account and of one client address,
// each with a token bucket. A refused request is answered 429 rate_limited
// with Retry-After, and nothing of it is done.
type RateLimit struct {
	// PerAccount is the sustained requests per second of one account
	// calling with a user token, over all its devices. Default 50; negative
	// turns the per-account limit off. Service calls are not counted per
	// account: a service acts for many accounts and is trusted with the
	// service credential; the per-address limit still applies to it.
	PerAccount float64
	// AccountBurst is how many requests one account may make at once.
	// Default 100.
	AccountBurst int
	// PerIP is the sustained requests per second from one client address
	// (an IPv4 address or an IPv6 /64), counted before authentication so
	// that requests with bad credentials are limited too. Default 500;
	// negative turns it off. Behind a proxy every client has the proxy's
	// address, so this then bounds the proxy's traffic as a whole.
	PerIP float64
	// IPBurst is how many requests one address may make at once.
	// Default 1000.
	IPBurst int
	// InFlightPerIP bounds the requests of one client address being
	// served at once — their bodies still arriving, their replies waiting
	// for a read model — so that one address cannot hold the server's
	// memory with slow bodies (each up to MaxBodyBytes, for the read
	// timeout). Default 64; negative turns it off (with PerIP, behind a
	// proxy that has every client's address).
	InFlightPerIP int
	// MaxKeys bounds the accounts and the addresses tracked, each, so that
	// a flood of new accounts or addresses cannot grow memory without
	// bound (about 150 bytes each). Default 65536.
	MaxKeys int
}

func (c *RateLimit) setDefaults() {
	if c.PerAccount == 0 {
		c.PerAccount = 50
	}
	if c.AccountBurst == 0 {
		c.AccountBurst = 100
	}
	if c.PerIP == 0 {
		c.PerIP = 500
	}
	if c.IPBurst == 0 {
		c.IPBurst = 1000
	}
	if c.InFlightPerIP == 0 {
		c.InFlightPerIP = 64
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 65536
	}
}

// validate reports the problems of c; it runs after setDefaults.
func (c RateLimit) validate() []error {
	var errs []error
	if c.AccountBurst < 1 || c.IPBurst < 1 {
		errs = append(errs, fmt.Errorf("a rate limit's burst must be at least 1, got %d and %d", c.AccountBurst, c.IPBurst))
	}
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("a rate limiter must track at least 1 key, got %d", c.MaxKeys))
	}
	return errs
}

// rateLimited is the refusal of a request over a limit.
func rateLimited(wait time.Duration) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Code: wire.CodeRateLimited, Message: "too many requests", RetryAfter: wait}
}

// limitAddress answers 429 to requests from an address over its rate, or
// with too many requests under way. A trusted API gateway's requests are
// not limited per address.
func (s *server) limitAddress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.fromTrustedGateway(r) {
			next.ServeHTTP(w, r)
			return
		}
		key := ratelimit.AddressKey(r.RemoteAddr)
		// The count first: a request it refuses takes no token.
		if !s.inFlight.enter(key) {
			writeError(w, &apiError{Status: http.StatusTooManyRequests, Code: wire.CodeRateLimited,
				Message: "too many requests from this address at once", RetryAfter: time.Second})
			return
		}
		defer s.inFlight.leave(key)
		if wait := s.byAddress.Take(key, time.Now()); wait > 0 {
			writeError(w, rateLimited(wait))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// inFlight counts the requests of each address under way, at most max
// each. It holds only addresses with a request under way. A nil
// *inFlight counts nothing.
type inFlight struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newInFlight(max int) *inFlight {
	if max < 0 {
		return nil
	}
	return &inFlight{max: max, n: map[string]int{}}
}

// enter counts one more request of key, unless key has max under way.
func (f *inFlight) enter(key string) bool {
	if f == nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[key] >= f.max {
		return false
	}
	f.n[key]++
	return true
}

// leave counts one request of key done.
func (f *inFlight) leave(key string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[key] <= 1 {
		delete(f.n, key)
		return
	}
	f.n[key]--
}

// retryAfterSeconds is the Retry-After header's value: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// fromTrustedGateway reports whether r carries the trusted API gateway's
// secret.
func (s *server) fromTrustedGateway(r *http.Request) bool {
	t := s.cfg.TrustedGateway
	if t.Secret == "" {
		return false
	}
	got := r.Header.Get(t.Header)
	return got != "" && auth.SecretEqual([]byte(got), []byte(t.Secret))
}
