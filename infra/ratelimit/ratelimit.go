// Package ratelimit keeps a token bucket per key — an account, a client
// address — with a bound on how many keys it tracks, so that a flood of
// new keys cannot grow memory without bound.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Keyed is a token bucket per key, at most max of them. A key's bucket
// that has filled up again is the same as a new one, so such buckets are
// forgotten when room is needed (and once a minute); if every bucket is
// still draining, arbitrary ones are forgotten, which can only let their
// keys through sooner, never refuse anyone. A nil *Keyed lets everything
// through.
type Keyed struct {
	perSecond float64
	burst     float64
	max       int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// bucket is one key's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// SweepEvery is how often full buckets are forgotten even without a need
// for room, so that memory shrinks after a burst of keys.
const SweepEvery = time.Minute

// New returns the buckets of one limit: perSecond tokens a second, burst
// at most, for at most max keys (about 150 bytes each). It returns nil
// when perSecond is negative (the limit is off).
func New(perSecond float64, burst, max int) *Keyed {
	if perSecond < 0 {
		return nil
	}
	return &Keyed{perSecond: perSecond, burst: float64(burst), max: max, buckets: map[string]*bucket{}, lastSweep: time.Now()}
}

// Take takes one token of key's bucket: 0 when the request may go ahead,
// otherwise how long until it could (nothing is taken then).
func (l *Keyed) Take(key string, now time.Time) time.Duration {
	return l.TakeN(key, 1, now)
}

// MaxWait is the longest wait TakeN answers: the wait for more tokens
// than the burst holds, or at a rate of 0.
const MaxWait = 24 * time.Hour

// TakeN takes n tokens of key's bucket: 0 when they were there (or n is
// not positive), otherwise how long until they would be, at most MaxWait
// (nothing is taken then).
func (l *Keyed) TakeN(key string, n int, now time.Time) time.Duration {
	if l == nil || n <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	if b.tokens >= float64(n) {
		b.tokens -= float64(n)
		return 0
	}
	if float64(n) > l.burst || l.perSecond <= 0 {
		return MaxWait
	}
	secs := (float64(n) - b.tokens) / l.perSecond
	if secs >= MaxWait.Seconds() {
		return MaxWait
	}
	return time.Duration(math.Ceil(secs * float64(time.Second)))
}

// Charge takes n tokens of key's bucket after the fact, for work whose
// cost was known only once done: what the bucket lacks becomes a debt
// that later requests wait for (TakeN answers at most MaxWait). A bucket
// forgotten to make room for new keys forgets its debt too.
func (l *Keyed) Charge(key string, n int, now time.Time) {
	if l == nil || n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	b.tokens -= float64(n)
}

// GiveBack returns n tokens to key's bucket (up to its burst), for a
// request that took them and then turned out to cost nothing.
func (l *Keyed) GiveBack(key string, n int, now time.Time) {
	if l == nil || n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	b.tokens = min(l.burst, b.tokens+float64(n))
}

// bucket is key's bucket, filled up to now, made if it has none. l.mu is
// held.
func (l *Keyed) bucket(key string, now time.Time) *bucket {
	if now.Sub(l.lastSweep) > SweepEvery {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.makeRoom(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.fill(now, l.perSecond, l.burst)
	return b
}

// fill adds the tokens of the time since b.last.
func (b *bucket) fill(now time.Time, perSecond, burst float64) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*perSecond)
		b.last = now
	}
}

// sweep forgets the buckets that are full again. l.mu is held.
func (l *Keyed) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		b.fill(now, l.perSecond, l.burst)
		if b.tokens >= l.burst {
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
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
