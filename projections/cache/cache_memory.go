package cache

import (
	"context"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/uuid"
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

// entry is a conversation's cached messages, laid out for the collector:
// the records (msgs) hold no pointer, and the messages' data is one
// buffer (buf), so a conversation is three objects to mark however many
// messages it keeps, none of them to scan but the entry, where a
// domain.Message and its encoding are seven or so. A single node's cache
// holds tens of thousands of messages, and every collection marks them
// all while the sends it slows wait (docs/benchmarks.md, "what the tail
// is made of").
//
// Nothing below len(buf) is ever written: the strings that message hands
// out point into buf, as do the encodings AfterEncoded hands out, and
// they stay what they were. A message's data is appended (an amended
// message's too); the bytes of messages dropped or replaced are dead
// until the live ones are copied to a new buffer (compact).
type entry struct {
	coveredAfter domain.MsgID
	msgs         []held // msgid order, all newer than the retention
	buf          []byte
	dead         int // bytes of buf no message in msgs uses
	bytes        int64
	used         atomic.Int64 // Unix nanoseconds of the last Add or After
}

// held is a cached message: its data, buf[off:off+n] of its entry, is the
// encoding, then the client message id, the sender's account and device,
// the kind and the body.
type held struct {
	off, n     int
	id         uuid.UUID
	msgID      domain.MsgID
	revision   domain.MsgID
	serverTime int64 // Unix nanoseconds
	editedAt   int64 // Unix nanoseconds, when edited
	// The lengths of the data's parts; the body is the rest.
	enc, client, account, device, kind uint32
	edited, deleted                    bool
}

// pack is m (with its encoding enc, nil when the cache keeps none) as
// held, its data not placed yet (see place).
func pack(m *domain.Message, enc []byte) held {
	h := held{id: m.ID, msgID: m.MsgID, revision: m.Revision, serverTime: m.ServerTime.UnixNano(), deleted: m.Deleted,
		enc: uint32(len(enc)), client: uint32(len(m.ClientMsgID)), account: uint32(len(m.Sender.Account)),
		device: uint32(len(m.Sender.Device)), kind: uint32(len(m.Kind))}
	h.n = len(enc) + len(m.ClientMsgID) + len(m.Sender.Account) + len(m.Sender.Device) + len(m.Kind) + len(m.Body)
	if !m.EditedAt.IsZero() {
		h.edited, h.editedAt = true, m.EditedAt.UnixNano()
	}
	return h
}

// place appends the data of h, packed from m and enc, to e's buffer.
func (e *entry) place(h *held, m *domain.Message, enc []byte) {
	h.off = len(e.buf)
	e.buf = slices.Grow(e.buf, h.n) // a new conversation's buffer is its message's size
	e.buf = append(e.buf, enc...)
	e.buf = append(e.buf, m.ClientMsgID...)
	e.buf = append(e.buf, m.Sender.Account...)
	e.buf = append(e.buf, m.Sender.Device...)
	e.buf = append(e.buf, m.Kind...)
	e.buf = append(e.buf, m.Body...)
}

// drop counts the data of e.msgs[from:to] as dead: they are leaving msgs.
func (e *entry) drop(from, to int) {
	for i := range e.msgs[from:to] {
		e.dead += e.msgs[from+i].n
	}
}

// compact copies the live data to a new buffer when more than half of
// the buffer is dead. The old one is left as it is, for what points
// into it.
func (e *entry) compact() {
	switch {
	case len(e.msgs) == 0:
		e.buf, e.dead = nil, 0
	case e.dead > len(e.buf)/2:
		buf := make([]byte, 0, len(e.buf)-e.dead)
		for i := range e.msgs {
			h := &e.msgs[i]
			off := len(buf)
			buf = append(buf, e.data(h)...)
			h.off = off
		}
		e.buf, e.dead = buf, 0
	}
}

// data is h's data.
func (e *entry) data(h *held) []byte {
	return e.buf[h.off : h.off+h.n : h.off+h.n]
}

// message is the message h, one of e's, holds, in conversation conv.
func (e *entry) message(h *held, conv domain.ConversationID) domain.Message {
	rest := e.data(h)[h.enc:]
	text := func(n uint32) string {
		if n == 0 {
			return "" // no pointer past the buffer's end
		}
		s := unsafe.String(unsafe.SliceData(rest), n) // data is never written: see held
		rest = rest[n:]
		return s
	}
	m := domain.Message{ID: h.id, MsgID: h.msgID, Conversation: conv, Revision: h.revision, Deleted: h.deleted,
		ServerTime: time.Unix(0, h.serverTime)}
	m.ClientMsgID = text(h.client)
	m.Sender.Account = domain.AccountID(text(h.account))
	m.Sender.Device = domain.DeviceID(text(h.device))
	m.Kind = text(h.kind)
	m.Body = text(uint32(len(rest)))
	if h.edited {
		m.EditedAt = time.Unix(0, h.editedAt)
	}
	return m
}

// encoded is h's encoding, nil when the cache keeps none.
func (e *entry) encoded(h *held) []byte {
	if h.enc == 0 {
		return nil
	}
	return e.data(h)[:h.enc:h.enc]
}

// sizeOf estimates what a cached message costs in memory, its encoding
// included (as it did when a message was kept as a domain.Message: the
// bound --cache-bytes means the same).
func sizeOf(h *held) int64 {
	return int64(320 + h.n)
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
	var h held
	var enc []byte
	if !m.ServerTime.Before(cutoff) {
		enc = c.encoded(&m) // outside the lock, which sync readers wait for
		h = pack(&m, enc)
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
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].msgID >= m.MsgID })
	if i < len(e.msgs) && e.msgs[i].msgID == m.MsgID {
		return nil
	}
	e.place(&h, &m, enc)
	e.msgs = append(e.msgs, held{})
	copy(e.msgs[i+1:], e.msgs[i:])
	e.msgs[i] = h
	e.bytes += sizeOf(&e.msgs[i])
	e.trimBefore(cutoff)
	return nil
}

// evictLocked forgets conversations other than keep, least recently used
// of a few sampled first, until the cache is within its budget; if keep
// alone is past it, keep's oldest messages.
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
			break
		}
		c.bytes -= oldest.bytes
		delete(c.convs, victim)
	}
	// keep alone is past the budget (one busy conversation on a quiet
	// node): it forgets its oldest messages, down to its newest at least.
	// It then answers only after them (coveredAfter); the store answers
	// before, as for a conversation forgotten whole.
	if keep == nil || c.maxBytes <= 0 || c.bytes <= c.maxBytes || len(keep.msgs) < 2 {
		return
	}
	over, freed, n := c.bytes-c.maxBytes, int64(0), 0
	for n < len(keep.msgs)-1 && freed < over {
		freed += sizeOf(&keep.msgs[n])
		n++
	}
	before := keep.bytes
	keep.trimThrough(keep.msgs[n-1].msgID)
	c.bytes += keep.bytes - before
}

// trimThrough forgets every message up to and including id.
func (e *entry) trimThrough(id domain.MsgID) {
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].msgID > id })
	for j := range e.msgs[:i] {
		e.bytes -= sizeOf(&e.msgs[j])
	}
	e.drop(0, i)
	e.msgs = append(e.msgs[:0:0], e.msgs[i:]...)
	e.compact()
	if id > e.coveredAfter {
		e.coveredAfter = id
	}
}

// trimBefore forgets the messages older than cutoff.
func (e *entry) trimBefore(cutoff time.Time) {
	n := 0
	for n < len(e.msgs) && e.msgs[n].serverTime < cutoff.UnixNano() {
		n++
	}
	if n > 0 {
		e.trimThrough(e.msgs[n-1].msgID)
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
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].msgID > after })
	rest := e.msgs[i:]
	more := len(rest) > limit
	if more {
		rest = rest[:limit]
	}
	msgs := make([]domain.Message, len(rest))
	for i := range rest {
		msgs[i] = e.message(&rest[i], conv)
	}
	if !withEncoded {
		return msgs, nil, more, true
	}
	encs := make([][]byte, len(rest))
	for i := range rest {
		if encs[i] = e.encoded(&rest[i]); encs[i] == nil {
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
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].msgID >= a.MsgID })
	if i == len(e.msgs) || e.msgs[i].msgID != a.MsgID {
		return nil
	}
	m, ok := a.Apply(e.message(&e.msgs[i], a.Conversation))
	if !ok {
		return nil
	}
	e.replace(i, &m, c.encoded(&m), &c.bytes)
	e.compact()
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
			m, ok := er.Apply(e.message(&e.msgs[i], conv))
			if !ok {
				continue
			}
			e.replace(i, &m, c.encoded(&m), &c.bytes)
		}
		e.compact()
	}
	return nil
}

// replace makes m, encoded as enc, the message e.msgs[i] holds, and adds
// the change in size to e's and *total.
func (e *entry) replace(i int, m *domain.Message, enc []byte, total *int64) {
	h := pack(m, enc)
	e.place(&h, m, enc)
	e.drop(i, i+1)
	delta := sizeOf(&h) - sizeOf(&e.msgs[i])
	e.msgs[i] = h
	e.bytes += delta
	*total += delta
}
