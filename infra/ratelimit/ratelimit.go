// Package ratelimit keeps a token bucket per key — an account, a client
// address — with a bound on how many keys it tracks, so that a flood of
// new keys cannot grow memory without bound.
package ratelimit

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a token bucket per key, at most max of them. A key's bucket
// that has filled up again is the same as a new one, so such buckets are
// forgotten when room is needed (and once a minute); if every bucket is
// still draining, arbitrary ones are forgotten, which can only let their
// keys through sooner, never refuse anyone. A nil *Keyed lets everything
// through.
type Keyed struct {
	limit rate.Limit
	burst int
	max   int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// SweepEvery is how often full buckets are forgotten even without a need
// for room, so that memory shrinks after a burst of keys.
const SweepEvery = time.Minute

// New returns the buckets of one limit: perSecond tokens a second, burst
// at most, for at most max keys (about 200 bytes each). It returns nil
// when perSecond is negative (the limit is off).
func New(perSecond float64, burst, max int) *Keyed {
	if perSecond < 0 {
		return nil
	}
	return &Keyed{limit: rate.Limit(perSecond), burst: burst, max: max, buckets: map[string]*rate.Limiter{}, lastSweep: time.Now()}
}

// Take takes one token of key's bucket: 0 when the request may go ahead,
// otherwise how long until it could (nothing is taken then).
func (l *Keyed) Take(key string, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	r := l.bucket(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// Wait is how long until key's bucket holds n tokens: 0 when it does now.
// It takes nothing: a request checks first, and pays with Charge only if
// it turns out to cost anything.
func (l *Keyed) Wait(key string, n int, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	have := l.bucket(key, now).TokensAt(now)
	if have >= float64(n) {
		return 0
	}
	return time.Duration(math.Ceil((float64(n) - have) / float64(l.limit) * float64(time.Second)))
}

// Charge takes n tokens of key's bucket, into debt if they are not there
// (requests that passed Wait together may all charge): the debt is paid
// by the waits of the key's next requests.
func (l *Keyed) Charge(key string, n int, now time.Time) {
	if l == nil {
		return
	}
	l.bucket(key, now).ReserveN(now, min(n, l.burst))
}

// bucket is key's bucket, made if it has none.
func (l *Keyed) bucket(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > SweepEvery {
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
	return b
}

// sweep forgets the buckets that are full again. l.mu is held.
func (l *Keyed) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}

// makeRoom sweeps, then forgets arbitrary buckets down to 7/8 of max, so
// that the next max/8 new keys need no sweep. l.mu is held.
func (l *Keyed) makeRoom(now time.Time) {
	l.sweep(now)
	for k := range l.buckets {
		if len(l.buckets) <= l.max-max(1, l.max/8) {
			break
		}
		delete(l.buckets, k)
	}
}

// Size is how many buckets are tracked.
func (l *Keyed) Size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
