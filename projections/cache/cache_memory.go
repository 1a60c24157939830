package cache

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Memory is an in-memory Cache, bounded in bytes: the 7-day cache of a
// single node, in front of its embedded store. Past its budget it forgets
// whole conversations, least recently used first (approximately: the
// oldest of a few sampled), coverage marker included, so that a forgotten
// conversation reads as not covered and sync asks the store.
type Memory struct {
	retention time.Duration
	now       func() time.Time
	// maxBytes bounds the messages held, by their estimated size (their
	// encodings included); 0 is no bound.
	maxBytes int64
	// encode, when set, is the encoding each message is kept with (see
	// KeepEncoded).
	encode func(*domain.Message) []byte

	mu    sync.RWMutex
	convs map[domain.ConversationID]*entry
	bytes int64
}

type entry struct {
	coveredAfter domain.MsgID
	msgs         []held // msgid order, all newer than the retention
	bytes        int64
	used         atomic.Int64 // Unix nanoseconds of the last Add or After
}

// held is a cached message with its encoding.
type held struct {
	domain.Message
	// encoded is the encoding of Message when the cache keeps one, else
	// nil. It is never changed in place: a change of the message replaces
	// it, so that a slice handed out by AfterEncoded stays what it was.
	encoded []byte
}

// sizeOf estimates what a cached message costs in memory, its encoding
// included.
func sizeOf(h *held) int64 {
	m := &h.Message
	return int64(320 + len(m.ClientMsgID) + len(m.Sender.Account) + len(m.Sender.Device) + len(m.Kind) + len(m.Body) + cap(h.encoded))
}

// NewMemory returns an empty cache keeping messages for retention, with no
// bound on its size.
func NewMemory(retention time.Duration) *Memory {
	return NewMemoryWithClock(retention, time.Now)
}

// NewBoundedMemory returns an empty cache keeping messages for retention,
// within about maxBytes.
func NewBoundedMemory(retention time.Duration, maxBytes int64) *Memory {
	m := NewMemoryWithClock(retention, time.Now)
	m.maxBytes = maxBytes
	return m
}

// NewMemoryWithClock is NewMemory with now as the clock that decides what is
// older than the retention, for tests.
func NewMemoryWithClock(retention time.Duration, now func() time.Time) *Memory {
	return &Memory{retention: retention, now: now, convs: map[domain.ConversationID]*entry{}}
}

// KeepEncoded makes the cache keep each message with encode's encoding of
// it, made when the message is added and again when an amendment or an
// erasure changes it, and hand both out with AfterEncoded: a sync reply
// then appends the encodings instead of encoding each message again. The
// encodings count against the cache's byte bound. Call it before the
// cache is used.
func (c *Memory) KeepEncoded(encode func(*domain.Message) []byte) *Memory {
	c.encode = encode
	return c
}

// encoded is m's encoding, nil when the cache keeps none.
func (c *Memory) encoded(m *domain.Message) []byte {
	if c.encode == nil {
		return nil
	}
	return c.encode(m)
}

// Holds reports whether the cache holds conversation c (and so ignores a
// floor given with its next message).
func (c *Memory) Holds(conv domain.ConversationID) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.convs[conv]
	return ok
}

// Bytes is the estimated size of the messages held.
func (c *Memory) Bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes
}

// Add implements Cache.
func (c *Memory) Add(_ context.Context, m domain.Message, floor domain.MsgID) error {
	cutoff := c.now().Add(-c.retention)
	var enc []byte
	if !m.ServerTime.Before(cutoff) {
		enc = c.encoded(&m) // outside the lock, which sync readers wait for
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.convs[m.Conversation]
	if e == nil {
		if floor >= m.MsgID {
			floor = m.MsgID - 1
		}
		e = &entry{coveredAfter: floor}
		c.convs[m.Conversation] = e
	}
	e.used.Store(time.Now().UnixNano())
	if m.MsgID <= e.coveredAfter {
		return nil
	}
	before := e.bytes
	defer func() { c.bytes += e.bytes - before; c.evictLocked(e) }()
	if m.ServerTime.Before(cutoff) {
		// Too old to keep: the cache no longer vouches for it or anything before.
		e.trimThrough(m.MsgID)
		return nil
	}
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID >= m.MsgID })
	if i < len(e.msgs) && e.msgs[i].MsgID == m.MsgID {
		return nil
	}
	e.msgs = append(e.msgs, held{})
	copy(e.msgs[i+1:], e.msgs[i:])
	e.msgs[i] = held{Message: m, encoded: enc}
	e.bytes += sizeOf(&e.msgs[i])
	e.trimBefore(cutoff)
	return nil
}

// evictLocked forgets conversations other than keep, least recently used
// of a few sampled first, until the cache is within its budget.
func (c *Memory) evictLocked(keep *entry) {
	for c.maxBytes > 0 && c.bytes > c.maxBytes && len(c.convs) > 1 {
		var victim domain.ConversationID
		var oldest *entry
		n := 0
		for id, e := range c.convs { // map order is random: a sample
			if e == keep {
				continue
			}
			if oldest == nil || e.used.Load() < oldest.used.Load() {
				victim, oldest = id, e
			}
			if n++; n == 5 {
				break
			}
		}
		if oldest == nil {
			return
		}
		c.bytes -= oldest.bytes
		delete(c.convs, victim)
	}
}

// trimThrough forgets every message up to and including id.
func (e *entry) trimThrough(id domain.MsgID) {
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID > id })
	for j := range e.msgs[:i] {
		e.bytes -= sizeOf(&e.msgs[j])
	}
	e.msgs = append(e.msgs[:0:0], e.msgs[i:]...)
	if id > e.coveredAfter {
		e.coveredAfter = id
	}
}

// trimBefore forgets the messages older than cutoff.
func (e *entry) trimBefore(cutoff time.Time) {
	n := 0
	for n < len(e.msgs) && e.msgs[n].ServerTime.Before(cutoff) {
		n++
	}
	if n > 0 {
		e.trimThrough(e.msgs[n-1].MsgID)
	}
}

// Trim drops every message older than the retention; run it periodically.
func (c *Memory) Trim() {
	cutoff := c.now().Add(-c.retention)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.convs {
		before := e.bytes
		e.trimBefore(cutoff)
		c.bytes += e.bytes - before
	}
}

// After implements Cache.
func (c *Memory) After(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, bool, error) {
	msgs, _, more, covered := c.after(conv, after, limit, false)
	return msgs, more, covered, nil
}

// AfterEncoded is After with the encoding of each message it returns
// (see KeepEncoded), in the same order; encs is nil when the cache keeps
// none. The caller must not change the encodings: they are the cache's.
func (c *Memory) AfterEncoded(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) (msgs []domain.Message, encs [][]byte, more, covered bool, err error) {
	msgs, encs, more, covered = c.after(conv, after, limit, c.encode != nil)
	return msgs, encs, more, covered, nil
}

func (c *Memory) after(conv domain.ConversationID, after domain.MsgID, limit int, withEncoded bool) ([]domain.Message, [][]byte, bool, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.convs[conv]
	if e == nil || after < e.coveredAfter {
		return nil, nil, false, false
	}
	e.used.Store(time.Now().UnixNano())
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID > after })
	rest := e.msgs[i:]
	more := len(rest) > limit
	if more {
		rest = rest[:limit]
	}
	msgs := make([]domain.Message, len(rest))
	for i := range rest {
		msgs[i] = rest[i].Message
	}
	if !withEncoded {
		return msgs, nil, more, true
	}
	encs := make([][]byte, len(rest))
	for i := range rest {
		if encs[i] = rest[i].encoded; encs[i] == nil {
			return msgs, nil, more, true // not kept (cannot happen once KeepEncoded is set before use)
		}
	}
	return msgs, encs, more, true
}

// RunTrim trims the cache every interval until ctx ends.
func (c *Memory) RunTrim(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Trim()
		}
	}
}

// Forget implements Cache.
func (c *Memory) Forget(_ context.Context, conv domain.ConversationID, through domain.MsgID) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.convs[conv]
	if e == nil || through <= e.coveredAfter {
		return 0, nil
	}
	held, before := len(e.msgs), e.bytes
	e.trimThrough(through)
	c.bytes += e.bytes - before
	return held - len(e.msgs), nil
}

// Amend implements Cache.
func (c *Memory) Amend(_ context.Context, a domain.Amendment) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.convs[a.Conversation]
	if e == nil || a.MsgID <= e.coveredAfter {
		return nil
	}
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID >= a.MsgID })
	if i == len(e.msgs) || e.msgs[i].MsgID != a.MsgID {
		return nil
	}
	m, ok := a.Apply(e.msgs[i].Message)
	if !ok {
		return nil
	}
	h := held{Message: m, encoded: c.encoded(&m)}
	delta := sizeOf(&h) - sizeOf(&e.msgs[i])
	e.msgs[i] = h
	e.bytes += delta
	c.bytes += delta
	c.evictLocked(e)
	return nil
}

// Erase implements Cache.
func (c *Memory) Erase(_ context.Context, er domain.Erasure, in func(domain.ConversationID) bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conv, e := range c.convs {
		if !in(conv) {
			continue
		}
		for i := range e.msgs {
			m, ok := er.Apply(e.msgs[i].Message)
			if !ok {
				continue
			}
			h := held{Message: m, encoded: c.encoded(&m)}
			delta := sizeOf(&h) - sizeOf(&e.msgs[i])
			e.msgs[i] = h
			e.bytes += delta
			c.bytes += delta
		}
	}
	return nil
}
