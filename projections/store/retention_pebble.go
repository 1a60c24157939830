package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
)

// floorKey holds a conversation's floor: the last msgid removed by the
// retention, 8 bytes big-endian.
func floorKey(c domain.ConversationID) []byte { return []byte("mf/" + c.String()) }

// messagesPrefix starts every message key; nextPrefix is the first key
// after every key that starts with p.
var messagesPrefix = []byte("m/")

func nextPrefix(p []byte) []byte {
	next := append([]byte(nil), p...)
	next[len(next)-1]++
	return next
}

// floorOf reads a conversation's floor through r.
func floorOf(get func([]byte) ([]byte, bool, error), c domain.ConversationID) (domain.MsgID, error) {
	v, ok, err := get(floorKey(c))
	if err != nil || !ok {
		return 0, err
	}
	return decodeFloor(c, v)
}

// noFloor is the floor of a conversation that lost nothing: below every
// msgid, 0 included.
const noFloor = domain.MsgID(math.MinInt64)

// floor is c's floor as this batch sees it (a batch writes none), noFloor
// when it has none.
func (w *write) floor(c domain.ConversationID) (domain.MsgID, error) {
	if !w.floored {
		return noFloor, nil
	}
	if f, ok := w.floors[c]; ok {
		return f, nil
	}
	k := floorKey(c)
	if absent(w.answering.floors, k) {
		w.floors[c] = noFloor
		return noFloor, nil
	}
	v, ok, err := w.look.Get(k)
	if err != nil {
		return 0, err
	}
	f := noFloor
	if ok {
		if f, err = decodeFloor(c, v); err != nil {
			return 0, err
		}
	}
	w.floors[c] = f
	return f, nil
}

func decodeFloor(c domain.ConversationID, v []byte) (domain.MsgID, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt history floor of %s", c)
	}
	return domain.MsgID(binary.BigEndian.Uint64(v)), nil
}

// GoneThrough implements Store.
func (s *Pebble) GoneThrough(_ context.Context, conv domain.ConversationID) (domain.MsgID, error) {
	return floorOf(func(k []byte) ([]byte, bool, error) { return pebblekv.Get(s.db, k) }, conv)
}

// Expired implements Store. It visits conversations in key order from
// where its last call stopped, wrapping around once, so that successive
// steps of a run move on instead of reading the same conversations again:
// one seek per conversation, and at most max messages read.
func (s *Pebble) Expired(_ context.Context, cutoff time.Time, max int) ([]Floor, error) {
	s.expireMu.Lock()
	defer s.expireMu.Unlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: messagesPrefix, UpperBound: nextPrefix(messagesPrefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Floor
	budget := max
	start := s.expireFrom
	wrapped := start == nil
	valid := it.First()
	if start != nil {
		valid = it.SeekGE(start)
	}
	for budget > 0 {
		if !valid {
			if wrapped {
				s.expireFrom = nil
				break
			}
			wrapped, valid = true, it.First()
			continue
		}
		k := it.Key()
		if wrapped && start != nil && string(k) >= string(start) {
			break // came round to where this call began
		}
		if len(k) < len(messagesPrefix)+10 {
			return nil, fmt.Errorf("corrupt message key %q", k)
		}
		prefix := append([]byte(nil), k[:len(k)-8]...)
		conv, err := domain.ParseConversationID(string(prefix[len(messagesPrefix) : len(prefix)-1]))
		if err != nil {
			return nil, fmt.Errorf("corrupt message key %q: %w", k, err)
		}
		var run []domain.Message
		for ; valid && len(run) < budget; valid = it.Next() {
			k := it.Key()
			if len(k) != len(prefix)+8 || string(k[:len(prefix)]) != string(prefix) {
				break
			}
			m, err := decodeMessage(conv, domain.MsgID(binary.BigEndian.Uint64(k[len(prefix):])), it.Value())
			if err != nil {
				return nil, err
			}
			if !m.ServerTime.Before(cutoff) {
				break
			}
			run = append(run, m)
		}
		if through, n, ok := expiredRun(run, cutoff); ok {
			out = append(out, Floor{Conversation: conv, Through: through, Messages: n})
			budget -= n
		}
		next := nextPrefix(prefix)
		s.expireFrom = next
		valid = it.SeekGE(next)
	}
	return out, it.Error()
}

// Remove implements Store: one batch for every floor.
func (s *Pebble) Remove(_ context.Context, floors ...Floor) (int, error) {
	s.filters.floors.BeginWrite()
	defer s.filters.floors.EndWrite()
	b := s.db.NewBatch()
	defer b.Close()
	removed := 0
	for _, f := range floors {
		v, had, err := pebblekv.Get(s.db, floorKey(f.Conversation))
		if err != nil {
			return 0, err
		}
		old := noFloor
		if had {
			if old, err = decodeFloor(f.Conversation, v); err != nil {
				return 0, err
			}
		}
		if f.Through > old {
			if !had {
				// Before the batch commits; a floor that rises is held
				// already (floors are never deleted), and adding it again
				// would count it again toward the filter's bound.
				s.filters.floors.Add(floorKey(f.Conversation))
			}
			if err := b.Set(floorKey(f.Conversation), binary.BigEndian.AppendUint64(nil, uint64(f.Through)), nil); err != nil {
				return 0, err
			}
		}
		n, err := s.removeThrough(b, f.Conversation, f.Through)
		if err != nil {
			return 0, err
		}
		removed += n
	}
	// Saves from now on look floors up; a batch that began before, as
	// with any Save racing a Remove, may store what the next run removes.
	if _, err := s.anyFloor(); err != nil {
		return 0, err
	}
	s.floored.Store(true)
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("cannot remove old history: %w", err)
	}
	return removed, nil
}

// removeThrough deletes, in b, conv's messages at or below through with
// their index keys; a client message id is deleted only where it still
// names the message.
func (s *Pebble) removeThrough(b *pebble.Batch, conv domain.ConversationID, through domain.MsgID) (int, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: convPrefix(conv), UpperBound: messageKey(conv, through+1)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		id := domain.MsgID(binary.BigEndian.Uint64(k[len(k)-8:]))
		m, err := decodeMessage(conv, id, it.Value())
		if err != nil {
			return 0, err
		}
		ck := clientIndexKey(m.Sender.Account, m.ClientMsgID)
		v, ok, err := pebblekv.Get(s.db, ck)
		if err != nil {
			return 0, err
		}
		if ok && string(v) == string(pointer(conv, id)) {
			if err := b.Delete(ck, nil); err != nil {
				return 0, err
			}
		}
		if m.Revision > 0 {
			if err := b.Delete(changeKey(conv, m.Revision, id), nil); err != nil {
				return 0, err
			}
		}
		if err := b.Delete(idKey(m.ID), nil); err != nil {
			return 0, err
		}
		if err := b.Delete(k, nil); err != nil {
			return 0, err
		}
		n++
	}
	return n, it.Error()
}
