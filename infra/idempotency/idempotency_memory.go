package idempotency

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory keeps reservations in the process: enough for a single node,
// whose every send goes through it. Expired reservations are dropped as
// reservations are made, so memory holds at most a TTL's worth (and a
// sweep interval's).
type Memory struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[Key]*memEntry
	swept   time.Time
}

// sweepEvery is how often a reservation looks for expired ones among all.
// Reservations are forgotten seconds after their acks (see the service's
// SweepIdempotency), so a sweep walks the seconds' worth held and finds
// only the few that expired unanswered: sweeping every 1,024 reservations
// walked tens of thousands of entries, under the lock every send takes,
// several times a second.
const sweepEvery = time.Minute

type memEntry struct {
	done    bool
	token   string
	until   time.Time // lease end, while pending
	expires time.Time
	parts   []int32
	ack     Ack
}

// NewMemory returns an empty in-memory adapter. now is the clock; nil is
// time.Now.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, entries: map[Key]*memEntry{}}
}

// live returns k's entry unless it expired.
func (m *Memory) live(k Key, now time.Time) *memEntry {
	e := m.entries[k]
	if e != nil && !now.Before(e.expires) {
		delete(m.entries, k)
		return nil
	}
	return e
}

// Reserve implements Reservations.
func (m *Memory) Reserve(_ context.Context, k Key, partition int32, lease, ttl time.Duration) (Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	e := m.live(k, now)
	switch {
	case e == nil:
		e = &memEntry{}
		m.entries[k] = e
	case e.done:
		return Entry{State: Done, Ack: e.ack}, nil
	case now.Before(e.until):
		return Entry{State: Pending}, nil
	}
	earlier := slices.Clone(e.parts)
	if !slices.Contains(e.parts, partition) {
		e.parts = append(e.parts, partition)
	}
	e.token, e.until, e.expires = newToken(), now.Add(lease), now.Add(ttl)
	return Entry{State: Reserved, Token: e.token, Earlier: earlier}, nil
}

// sweep drops expired reservations once every sweepEvery, so that a
// long-lived process holds no more than a TTL's worth.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.swept) < sweepEvery {
		return
	}
	m.swept = now
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, k)
		}
	}
}

// owned returns k's pending entry held by token.
func (m *Memory) owned(k Key, token string) (*memEntry, error) {
	e := m.live(k, m.now())
	if e == nil || e.done || e.token != token {
		return nil, ErrNotOwner
	}
	return e, nil
}

// Extend implements Reservations.
func (m *Memory) Extend(_ context.Context, k Key, token string, lease time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.owned(k, token)
	if err != nil {
		return err
	}
	now := m.now()
	e.until = now.Add(lease)
	if e.expires.Before(e.until) {
		e.expires = e.until
	}
	return nil
}

// Complete implements Reservations.
func (m *Memory) Complete(_ context.Context, k Key, token string, ack Ack, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.owned(k, token)
	if err != nil {
		return err
	}
	*e = memEntry{done: true, ack: ack, expires: m.now().Add(ttl)}
	return nil
}

// Abandon implements Reservations.
func (m *Memory) Abandon(_ context.Context, k Key, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.owned(k, token)
	if err != nil {
		return err
	}
	e.token, e.until = "", time.Time{}
	return nil
}

// Forget implements Reservations.
func (m *Memory) Forget(_ context.Context, keys ...Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		if e := m.entries[k]; e != nil && e.done {
			delete(m.entries, k)
		}
	}
	return nil
}
