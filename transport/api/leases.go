package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/parley-chat/parley/infra/idempotency"
)

// leases renews the reservations of the attempts under way, each every
// third of its lease, with one timer for all of them: nearly every attempt
// ends within milliseconds, long before its first renewal, and a timer
// (and a goroutine to fire it) each would cost every send more than the
// map entry that stands for it here.
type leases struct {
	// every is how often a held reservation is renewed.
	every  time.Duration
	extend func(ctx context.Context, k idempotency.Key, token string) error
	log    *slog.Logger

	mu    sync.Mutex
	held  map[heldLease]time.Time // when each is renewed next
	timer *time.Timer             // nil while nothing is held
	// queue holds the renewals due, renewing counts the goroutines
	// working through it.
	queue    []heldLease
	renewing int
}

// heldLease is one attempt's reservation: the token tells a later attempt
// that took a lapsed lease over from one still running here.
type heldLease struct {
	key   idempotency.Key
	token string
}

// hold renews the reservation from now until release.
func (l *leases) hold(k idempotency.Key, token string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = map[heldLease]time.Time{}
	}
	l.held[heldLease{k, token}] = now.Add(l.every)
	if l.timer == nil {
		l.timer = time.AfterFunc(l.every, l.renew)
	}
}

// release stops renewing the reservation. A renewal already under way
// may still land; the reservation's store refuses it once the attempt has
// completed or abandoned the reservation, and it is harmless before.
func (l *leases) release(k idempotency.Key, token string) {
	l.mu.Lock()
	delete(l.held, heldLease{k, token})
	l.mu.Unlock()
}

// holds reports whether h is still held.
func (l *leases) holds(h heldLease) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.held[h]
	return ok
}

// renew extends the leases that are due, and sets the timer for the next.
func (l *leases) renew() {
	now := time.Now()
	var due []heldLease
	l.mu.Lock()
	next := time.Time{}
	for h, at := range l.held {
		if !at.After(now) {
			due = append(due, h)
			at = now.Add(l.every)
			l.held[h] = at
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if next.IsZero() {
		l.timer = nil
	} else {
		l.timer.Reset(next.Sub(now))
	}
	// Concurrently, so that one slow renewal does not hold the others
	// past their leases and the renewals share Redis pipelines; by at
	// most renewers goroutines, not one a lease: thousands are due
	// within moments while a broker does not answer (the undecided
	// sends).
	l.queue = append(l.queue, due...)
	start := min(len(l.queue), renewers-l.renewing)
	l.renewing += start
	l.mu.Unlock()
	for range start {
		go l.renewQueued()
	}
}

// renewQueued renews queued leases until none is left.
func (l *leases) renewQueued() {
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.queue = nil
			l.renewing--
			l.mu.Unlock()
			return
		}
		h := l.queue[0]
		l.queue = l.queue[1:]
		l.mu.Unlock()
		l.extendOne(h)
	}
}

// renewers is how many renewals run at once: enough to fill the two
// Redis pipelines of 256 calls that a gateway's reservations may have in
// flight (infra/coalesce's defaults), so that bounding them costs no
// round trip.
const renewers = 512

func (l *leases) extendOne(h heldLease) {
	ctx, cancel := context.WithTimeout(context.Background(), l.every)
	defer cancel()
	if err := l.extend(ctx, h.key, h.token); err != nil && l.holds(h) {
		// A lease the attempt let go of meanwhile is not a failure.
		l.log.Warn("cannot renew a client message id's reservation", "err", err)
	}
}
