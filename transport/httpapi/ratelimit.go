package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/parley-chat/parley/transport/wire"
	"golang.org/x/time/rate"
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
	// MaxKeys bounds the accounts and the addresses tracked, each, so that
	// a flood of new accounts or addresses cannot grow memory without
	// bound (about 200 bytes each). Default 65536.
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

// limiters is a token bucket per key, at most max of them. A key's bucket
// that has filled up again is the same as a new one, so such buckets are
// forgotten when room is needed (and once a minute); if every bucket is
// still draining, arbitrary ones are forgotten, which can only let their
// keys through sooner, never refuse anyone.
type limiters struct {
	limit rate.Limit
	burst int
	max   int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// sweepEvery is how often full buckets are forgotten even without a need
// for room, so that memory shrinks after a burst of keys.
const sweepEvery = time.Minute

// newLimiters returns the buckets of one limit; nil when perSecond is
// negative (the limit is off).
func newLimiters(perSecond float64, burst, max int) *limiters {
	if perSecond < 0 {
		return nil
	}
	return &limiters{limit: rate.Limit(perSecond), burst: burst, max: max, buckets: map[string]*rate.Limiter{}, lastSweep: time.Now()}
}

// take takes one token of key's bucket: 0 when the request may go ahead,
// otherwise how long until it could (nothing is taken then).
func (l *limiters) take(key string, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	if now.Sub(l.lastSweep) > sweepEvery {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.makeRoom(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// sweep forgets the buckets that are full again. l.mu is held.
func (l *limiters) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}

// makeRoom sweeps, then forgets arbitrary buckets down to 7/8 of max, so
// that the next max/8 new keys need no sweep. l.mu is held.
func (l *limiters) makeRoom(now time.Time) {
	l.sweep(now)
	for k := range l.buckets {
		if len(l.buckets) <= l.max-max(1, l.max/8) {
			break
		}
		delete(l.buckets, k)
	}
}

// size is how many buckets are tracked.
func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// addressKey is the rate-limit key of a client address: the IPv4 address,
// or the /64 of an IPv6 address (one host gets a whole /64).
func addressKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// rateLimited is the refusal of a request over a limit.
func rateLimited(wait time.Duration) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Code: wire.CodeRateLimited, Message: "too many requests", RetryAfter: wait}
}

// limitAddress answers 429 to requests from an address over its limit.
func (s *server) limitAddress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait := s.byAddress.take(addressKey(r.RemoteAddr), time.Now()); wait > 0 {
			writeError(w, rateLimited(wait))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// retryAfterSeconds is the Retry-After header's value: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}
