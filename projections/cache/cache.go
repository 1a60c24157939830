// Package cache is the 7-day message cache projection (R5, R6). A cache
// never answers for a range it cannot prove it holds whole (I3): every
// conversation carries a coverage marker, the msgid after which the cache
// has every message, and a read below it is refused so that sync falls back
// to the store.
package cache

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Name is the projection's stable name.
const Name = "parley.projection.cache"

// Retention is how long the cache keeps a message (R5).
const Retention = 7 * 24 * time.Hour

// Cache is the 7-day cache port.
type Cache interface {
	// Add caches m. For a conversation the cache holds nothing of, floor is
	// the msgid after which the caller vouches that m is the first message
	// (so the cache is complete after floor); for a known conversation
	// floor is ignored. Adding a cached message again changes nothing, and
	// a message older than the retention only moves the coverage marker.
	Add(ctx context.Context, m domain.Message, floor domain.MsgID) error
	// After returns up to limit messages of conv with msgid > after, in
	// order, and whether more follow — if the cache holds that whole range.
	// covered is false when it does not; the caller must then ask the store.
	After(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) (msgs []domain.Message, more, covered bool, err error)
	// Amend applies an edit or a deletion (domain.Amendment.Apply) to the
	// message it names, if the cache holds it: the latest body, or a
	// tombstone without body. A message the cache does not hold is not
	// added; one below the coverage marker is never read from the cache.
	Amend(ctx context.Context, a domain.Amendment) error
	// Forget removes conv's messages at or below through — the history
	// retention removed them from the store — and moves its coverage
	// marker up to through, so that the cache never answers for a range
	// that reaches below what the store still holds. A conversation the
	// cache does not hold stays unknown. It returns how many messages it
	// removed.
	Forget(ctx context.Context, conv domain.ConversationID, through domain.MsgID) (int, error)
	// Erase turns every cached message e covers (domain.Erasure.Apply) in
	// the conversations in accepts into a tombstone; in is a hint, as for
	// store.Store.Erase. Erasing again changes nothing.
	Erase(ctx context.Context, e domain.Erasure, in func(domain.ConversationID) bool) error
}

// Prev tells the msgid of the message before r's in conversation c, 0 when
// there is none (conversations.Predecessors.Before); known is false when
// it cannot be told.
type Prev func(ctx context.Context, r projections.Record, c domain.ConversationID) (id domain.MsgID, known bool, err error)

// Projection feeds MessageSent records into a Cache.
type Projection struct {
	cache        Cache
	epoch        uint8
	fromLogStart bool
	// prev, when set, vouches for more than a message's own msgid when the
	// cache first meets a conversation: everything after the message
	// before it (see WithPrev).
	prev Prev
	// journal, when set, notes what each batch changes (WithJournal).
	journal *Journal

	mu        sync.Mutex
	firstSeen map[int32]int64
	doubted   bool // see Doubt
}

// NewProjection returns the cache projection. fromLogStart says that its
// consumer reads every partition from the start of the retained log in this
// run (an in-memory cache rebuilt at start), so a conversation first seen
// here has no earlier message in the log.
func NewProjection(c Cache, epoch uint8, fromLogStart bool) *Projection {
	return &Projection{cache: c, epoch: epoch, fromLogStart: fromLogStart, firstSeen: map[int32]int64{}}
}

// WithPrev makes the projection ask prev, when it meets a conversation
// for the first time, for the msgid of the message before: the cache then
// holds every message after that one (none lies between), so a client
// whose cursor is there is answered by the cache. A conversation without
// a message before is covered from its start.
func (p *Projection) WithPrev(prev Prev) *Projection {
	p.prev = prev
	return p
}

// Doubt tells the projection that the cache may have lost writes: from
// now on a conversation it meets is covered from its message on only, as
// if fromLogStart were false — a conversation whose key was lost holds
// nothing of the log's start any more.
func (p *Projection) Doubt() {
	p.mu.Lock()
	p.doubted = true
	p.mu.Unlock()
}

// WithJournal makes the projection note in j, before it applies them,
// which conversations the records change: for a cache that can lose
// writes (Redis.Repair).
func (p *Projection) WithJournal(j *Journal) *Projection {
	p.journal = j
	return p
}

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, r projections.Record) error {
	if p.journal != nil {
		p.journal.record([]projections.Record{r})
	}
	if e, in, ok, err := r.Erasure(); ok {
		if err != nil {
			return err
		}
		return p.cache.Erase(ctx, e, in)
	}
	if a, ok, err := r.Amendment(); ok {
		if err != nil {
			return err
		}
		return p.cache.Amend(ctx, a)
	}
	m, ok, err := r.Message()
	if !ok || err != nil {
		return err
	}
	floor, err := p.floorOf(ctx, r, m.Conversation)
	if err != nil {
		return err
	}
	return p.cache.Add(ctx, m, floor)
}

// floorOf is floor, improved by prev when it is set.
func (p *Projection) floorOf(ctx context.Context, r projections.Record, c domain.ConversationID) (domain.MsgID, error) {
	if p.prev == nil {
		return p.floor(r), nil
	}
	if h, ok := p.cache.(interface {
		Holds(domain.ConversationID) bool
	}); ok && h.Holds(c) {
		return r.MsgID - 1, nil // the cache ignores a floor for a conversation it holds
	}
	prev, known, err := p.prev(ctx, r, c)
	switch {
	case err != nil:
		return 0, err
	case known && prev < r.MsgID:
		return prev, nil // 0: the conversation starts here
	}
	return r.MsgID - 1, nil
}

// floor is what the projection can vouch for a conversation it meets for
// the first time at r: from m on, or — reading from the log start — from
// the first record of the partition on.
func (p *Projection) floor(r projections.Record) domain.MsgID {
	if !p.fromLogStart {
		return r.MsgID - 1
	}
	p.mu.Lock()
	if p.doubted {
		p.mu.Unlock()
		return r.MsgID - 1
	}
	first, ok := p.firstSeen[r.Position.Partition]
	if !ok {
		first = r.Position.Offset
		p.firstSeen[r.Position.Partition] = first
	}
	p.mu.Unlock()
	if first == 0 && p.epoch <= 1 {
		// The first epoch's log has never lost a record: everything is
		// covered. A later epoch's offset 0 is not the start of history:
		// earlier epochs live only in the store.
		return 0
	}
	id, err := events.MsgID(p.epoch, first)
	if err != nil {
		return r.MsgID - 1
	}
	return id - 1
}

// batchAdder is a Cache that adds many messages in one round trip.
type batchAdder interface {
	AddBatch(ctx context.Context, batch []Addition) error
}

// ApplyBatch implements projections.Batcher: one round trip for the
// batch's messages when the cache can, else one Add per message; a change
// applies after the messages before it.
func (p *Projection) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	if p.journal != nil {
		p.journal.record(recs)
	}
	var adds []Addition
	seen := map[domain.ConversationID]bool{}
	for _, r := range recs {
		if e, in, ok, err := r.Erasure(); ok {
			if err != nil {
				continue // poison is skipped
			}
			if err := p.add(ctx, adds); err != nil {
				return err
			}
			adds = nil
			if err := p.cache.Erase(ctx, e, in); err != nil {
				return err
			}
			continue
		}
		if a, ok, err := r.Amendment(); ok {
			if err != nil {
				continue // poison is skipped
			}
			if err := p.add(ctx, adds); err != nil {
				return err
			}
			adds = nil
			if err := p.cache.Amend(ctx, a); err != nil {
				return err
			}
			continue
		}
		m, ok, err := r.Message()
		if err != nil || !ok {
			continue // poison is skipped; other events are not cached
		}
		floor := p.floor(r)
		if p.prev != nil && !seen[m.Conversation] {
			// Only a conversation's first message in the batch needs the
			// index: the cache holds the rest after it.
			if floor, err = p.floorOf(ctx, r, m.Conversation); err != nil {
				return err
			}
		}
		seen[m.Conversation] = true
		adds = append(adds, Addition{Message: m, Floor: floor})
	}
	return p.add(ctx, adds)
}

// add caches adds, in one round trip when the cache can.
func (p *Projection) add(ctx context.Context, adds []Addition) error {
	if len(adds) == 0 {
		return nil
	}
	if b, ok := p.cache.(batchAdder); ok {
		return b.AddBatch(ctx, adds)
	}
	for _, a := range adds {
		if err := p.cache.Add(ctx, a.Message, a.Floor); err != nil {
			return err
		}
	}
	return nil
}
