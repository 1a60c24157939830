package cache

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Memory is an in-memory Cache, rebuilt from the log at every start.
type Memory struct {
	retention time.Duration
	now       func() time.Time

	mu    sync.RWMutex
	convs map[domain.ConversationID]*entry
}

type entry struct {
	coveredAfter domain.MsgID
	msgs         []domain.Message // msgid order, all newer than the retention
}

// NewMemory returns an empty cache keeping messages for retention.
func NewMemory(retention time.Duration) *Memory {
	return NewMemoryWithClock(retention, time.Now)
}

// NewMemoryWithClock is NewMemory with now as the clock that decides what is
// older than the retention, for tests.
func NewMemoryWithClock(retention time.Duration, now func() time.Time) *Memory {
	return &Memory{retention: retention, now: now, convs: map[domain.ConversationID]*entry{}}
}

// Add implements Cache.
func (c *Memory) Add(_ context.Context, m domain.Message, floor domain.MsgID) error {
	cutoff := c.now().Add(-c.retention)
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
	if m.MsgID <= e.coveredAfter {
		return nil
	}
	if m.ServerTime.Before(cutoff) {
		// Too old to keep: the cache no longer vouches for it or anything before.
		e.trimThrough(m.MsgID)
		return nil
	}
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID >= m.MsgID })
	if i < len(e.msgs) && e.msgs[i].MsgID == m.MsgID {
		return nil
	}
	e.msgs = append(e.msgs, domain.Message{})
	copy(e.msgs[i+1:], e.msgs[i:])
	e.msgs[i] = m
	e.trimBefore(cutoff)
	return nil
}

// trimThrough forgets every message up to and including id.
func (e *entry) trimThrough(id domain.MsgID) {
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID > id })
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
		e.trimBefore(cutoff)
	}
}

// After implements Cache.
func (c *Memory) After(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.convs[conv]
	if e == nil || after < e.coveredAfter {
		return nil, false, false, nil
	}
	i := sort.Search(len(e.msgs), func(i int) bool { return e.msgs[i].MsgID > after })
	rest := e.msgs[i:]
	more := len(rest) > limit
	if more {
		rest = rest[:limit]
	}
	return append([]domain.Message(nil), rest...), more, true, nil
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
