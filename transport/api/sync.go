package api

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

// SyncResult is one page of a conversation after a cursor.
type SyncResult struct {
	Messages []domain.Message
	// Encoded, when not nil, holds the wire encoding of each of Messages
	// (wire.EncodeMessage), in the same order, as the cache keeps them: a
	// transport that sends that encoding appends these instead of
	// encoding the messages again. They are the cache's: read only.
	Encoded [][]byte
	// Source is "cache" or "store": which read model answered.
	Source string
	// More is true when messages after the page remain.
	More bool
	// GoneThrough, when not 0, is the last msgid of the conversation that
	// the history retention removed, and it is above the cursor asked
	// for: the messages after that cursor up to and including it are gone
	// for good, and Messages starts after them.
	GoneThrough domain.MsgID
	// Changes, asked for with changes, are the latest forms of the
	// messages at or below the cursor asked for that were changed (edited,
	// deleted, erased) after it, by revision: what a device that held them
	// missed. At most MaxChanges; ChangesMore says more were changed, and
	// the device should read the conversation again from its start.
	Changes     []domain.Message
	ChangesMore bool
	// NextTime and NextMsgID are the cursor to continue from.
	NextTime  time.Time
	NextMsgID domain.MsgID
}

// MaxChanges bounds the changes of one sync: a device that missed more
// re-reads the conversation, which pages.
const MaxChanges = 100

// Sources of a sync.
const (
	SourceCache = "cache"
	SourceStore = "store"
)

// Sync returns messages of conversation after lastMsgID (R6). When lastTime
// is within the cache window and the cache holds the whole range, the cache
// answers; otherwise the store does — never both in one read. Either is read
// only after it has applied every record acknowledged before the call.
// When the history retention removed messages after lastMsgID, the result
// says up to where (GoneThrough). Only the store can say so: the cache
// forgets what the retention removes before the store does, and never
// answers for a cursor below what it forgot. With changes, the result also
// holds the changes a device at lastMsgID missed (SyncResult.Changes),
// always read from the store, once it has applied every record
// acknowledged before the call: one indexed store query more.
func (s *Service) Sync(ctx context.Context, by Actor, conversation string, lastTime time.Time, lastMsgID domain.MsgID, limit int, changes bool) (res SyncResult, err error) {
	defer func() {
		if err != nil {
			s.cfg.Observer.SyncDone(string(Code(err)))
		} else {
			s.cfg.Observer.SyncDone(res.Source)
		}
	}()
	if err := s.spendRead(by); err != nil {
		return SyncResult{}, err
	}
	return s.sync(ctx, by.Account, conversation, lastTime, lastMsgID, limit, changes)
}

func (s *Service) sync(ctx context.Context, who domain.AccountID, conversation string, lastTime time.Time, lastMsgID domain.MsgID, limit int, changes bool) (SyncResult, error) {
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return SyncResult{}, err
	}
	if err := s.authorizeRead(ctx, who, conv); err != nil {
		return SyncResult{}, err
	}
	if lastMsgID < 0 {
		return SyncResult{}, &domain.InvalidError{Field: "lastMsgId", Reason: "is negative"}
	}
	switch {
	case limit < 0:
		return SyncResult{}, &domain.InvalidError{Field: "limit", Reason: "is negative"}
	case limit == 0:
		limit = s.cfg.DefaultLimit
	case limit > s.cfg.MaxLimit:
		limit = s.cfg.MaxLimit
	}
	part := events.PartitionFor(conv.String(), s.log.Partitions())
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	end, err := s.log.EndOffset(ctx, part)
	if err != nil {
		return SyncResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	now := s.cfg.Now()
	res := SyncResult{NextTime: now, NextMsgID: lastMsgID}
	if changes && lastMsgID > 0 {
		if err := s.rm.StoreProgress.WaitFor(ctx, part, end); err != nil {
			return SyncResult{}, fmt.Errorf("store is behind the log: %w: %v", ErrUnavailable, err)
		}
		if res.Changes, res.ChangesMore, err = s.rm.Store.Changes(ctx, conv, lastMsgID, MaxChanges); err != nil {
			return SyncResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if !lastTime.IsZero() && now.Sub(lastTime) < s.cfg.CacheWindow {
		// A cache that cannot show it has applied everything acknowledged
		// before this call (lagging, or flushed and not yet refilled) must
		// not answer: the store does (I3).
		if msgs, encs, more, ok := s.fromCache(ctx, conv, part, end, lastMsgID, limit); ok {
			res.Messages, res.Encoded, res.More, res.Source = msgs, encs, more, SourceCache
			return res.withCursor(), nil
		}
	}
	if err := s.rm.StoreProgress.WaitFor(ctx, part, end); err != nil {
		return SyncResult{}, fmt.Errorf("store is behind the log: %w: %v", ErrUnavailable, err)
	}
	msgs, more, err := s.rm.Store.After(ctx, conv, lastMsgID, limit)
	if err != nil {
		return SyncResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// The floor is read after the page: a Remove between the two raises
	// the floor over messages the page still holds (they are dropped
	// here), never over a gap that the floor read would not cover.
	gone, err := s.rm.Store.GoneThrough(ctx, conv)
	if err != nil {
		return SyncResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if gone > lastMsgID {
		res.GoneThrough, res.NextMsgID = gone, gone
		for len(msgs) > 0 && msgs[0].MsgID <= gone {
			msgs = msgs[1:]
		}
	}
	res.Messages, res.More, res.Source = msgs, more, SourceStore
	return res.withCursor(), nil
}

// encodedCache is a cache that keeps each message's wire encoding
// (cache.Memory.KeepEncoded).
type encodedCache interface {
	AfterEncoded(ctx context.Context, conv domain.ConversationID, after domain.MsgID, limit int) (msgs []domain.Message, encs [][]byte, more, covered bool, err error)
}

// fromCache reads the cache if it has caught up with end and covers the
// range, with the messages' encodings when it keeps them.
func (s *Service) fromCache(ctx context.Context, conv domain.ConversationID, part int32, end int64, after domain.MsgID, limit int) ([]domain.Message, [][]byte, bool, bool) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.CacheWait)
	defer cancel()
	if err := s.rm.CacheProgress.WaitFor(wctx, part, end); err != nil {
		return nil, nil, false, false
	}
	var (
		msgs          []domain.Message
		encs          [][]byte
		more, covered bool
		err           error
	)
	if ec, ok := s.rm.Cache.(encodedCache); ok {
		msgs, encs, more, covered, err = ec.AfterEncoded(ctx, conv, after, limit)
	} else {
		msgs, more, covered, err = s.rm.Cache.After(ctx, conv, after, limit)
	}
	if err != nil || !covered {
		return nil, nil, false, false
	}
	return msgs, encs, more, true
}

func (r SyncResult) withCursor() SyncResult {
	if n := len(r.Messages); n > 0 {
		r.NextMsgID = r.Messages[n-1].MsgID
	}
	return r
}
