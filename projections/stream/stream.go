// Package stream keeps the most recent events of the log in memory and
// hands new ones to watchers: what the console's event view shows. It is a
// projection like the others (in every process's shared in-memory reader)
// and never writes anything.
package stream

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Name is the projection's stable name.
const Name = "parley.projection.stream"

// Event is one record as the console shows it.
type Event struct {
	Type      string `json:"type"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	MsgID     int64  `json:"msgId,omitempty"`
	Key       string `json:"key"`
	Time      int64  `json:"time"` // broker time, Unix ms
	// Summary says who did what, without message bodies.
	Summary string `json:"summary"`
}

// Recent keeps the last events and fans new ones out to watchers.
type Recent struct {
	mu       sync.Mutex
	ring     []Event
	next     int
	full     bool
	watchers map[chan Event]struct{}
}

// NewRecent keeps the last n events.
func NewRecent(n int) *Recent {
	return &Recent{ring: make([]Event, n), watchers: map[chan Event]struct{}{}}
}

// Apply implements projections.Projection.
func (r *Recent) Apply(_ context.Context, rec projections.Record) error {
	e := Event{Type: rec.Event.EventName(), Partition: rec.Position.Partition, Offset: rec.Position.Offset,
		Key: rec.Event.Key(), Time: rec.Timestamp.UnixMilli()}
	switch v := rec.Event.(type) {
	case events.MessageSent:
		e.MsgID = int64(rec.MsgID)
		e.Summary = v.SenderAccount + "/" + v.SenderDevice + " sent " + v.Kind
	case events.GroupCreated:
		e.Summary = v.Owner + " created " + v.Name
	case events.GroupMembersAdded:
		e.Summary = v.By + " added members"
	case events.GroupMembersRemoved:
		e.Summary = v.By + " removed members"
	case events.MessageEdited:
		e.MsgID = v.MsgID
		e.Summary = v.Account + "/" + v.Device + " edited a message"
	case events.MessageDeleted:
		e.MsgID = v.MsgID
		e.Summary = v.Account + "/" + v.Device + " deleted a message"
	case events.ConversationRead:
		e.MsgID = v.MsgID // read up to it
		e.Summary = v.Account + "/" + v.Device + " read"
	}
	if e.Time <= 0 {
		e.Time = time.Now().UnixMilli()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = e
	r.next = (r.next + 1) % len(r.ring)
	if r.next == 0 {
		r.full = true
	}
	for w := range r.watchers {
		select {
		case w <- e:
		default: // a watcher that does not keep up misses events, never stalls the log
		}
	}
	return nil
}

// Watch returns the recent events, oldest first, and a channel of the
// following ones until stop is called.
func (r *Recent) Watch() (recent []Event, live <-chan Event, stop func()) {
	ch := make(chan Event, 256)
	r.mu.Lock()
	if r.full {
		recent = append(recent, r.ring[r.next:]...)
	}
	recent = append(recent, r.ring[:r.next]...)
	r.watchers[ch] = struct{}{}
	r.mu.Unlock()
	return recent, ch, func() {
		r.mu.Lock()
		delete(r.watchers, ch)
		r.mu.Unlock()
	}
}
