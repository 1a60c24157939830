package conversations

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Read cursors and unread counts. Counting must not scan history, nor
// touch every member of a group on every message, so the index keeps per
// conversation its message count, and per (account, conversation) four
// numbers (a cursor):
//
//	readMsgId   the highest msgid the account has read
//	readSeq     the conversation's message count up to readMsgId
//	sent        the account's own messages in the conversation
//	sentAtRead  of those, the ones up to readMsgId
//
// so that unread = (count - readSeq) - (sent - sentAtRead): the messages
// after the cursor that the account did not send. A message changes its
// conversation's count and its sender's cursor (O(1) whatever the group's
// size); a read changes the reader's cursor. A read up to the newest
// message (the usual one) needs nothing else; a read up to an older msgid
// looks up the count at that msgid and the reader's own count there, which
// the index keeps per message (a seek, not a scan).

// ReadState is an account's place in a conversation.
type ReadState struct {
	// Latest is the conversation's newest msgid, 0 when it has none.
	Latest domain.MsgID
	// ReadMsgID is the highest msgid the account has read, 0 for none.
	ReadMsgID domain.MsgID
	// Unread counts the messages after ReadMsgID that the account did not send.
	Unread int64
}

// Reads is the read side of the cursors.
type Reads interface {
	// ReadState is account's place in c.
	ReadState(ctx context.Context, c domain.ConversationID, account domain.AccountID) (ReadState, error)
	// ReadMsgIDs returns the cursor of each of accounts in c, 0 for one
	// who has read nothing; the result is parallel to accounts.
	ReadMsgIDs(ctx context.Context, c domain.ConversationID, accounts []domain.AccountID) ([]domain.MsgID, error)
}

// Read is a ConversationRead as the index applies it.
type Read struct {
	Conversation domain.ConversationID
	Account      domain.AccountID
	Device       domain.DeviceID
	MsgID        domain.MsgID
	At           time.Time
	// PushToOrigin: the read came through the HTTP API, and its device
	// gets the receipt too.
	PushToOrigin bool
}

// ReadOf maps a ConversationRead record to a Read; any other event gives ok
// false. A read that fails validation is poison.
func ReadOf(r projections.Record) (Read, bool, error) {
	e, ok := r.Event.(events.ConversationRead)
	if !ok {
		return Read{}, false, nil
	}
	c, err := domain.ParseConversationID(e.Conversation)
	if err != nil {
		return Read{}, true, &projections.PoisonError{Err: err}
	}
	a, err := domain.ParseAccountID(e.Account)
	if err != nil {
		return Read{}, true, &projections.PoisonError{Err: err}
	}
	d, err := domain.ParseDeviceID(e.Device)
	if err != nil {
		return Read{}, true, &projections.PoisonError{Err: err}
	}
	if e.MsgID <= 0 {
		return Read{}, true, &projections.PoisonError{Err: &domain.InvalidError{Field: "msgId", Reason: "must be positive"}}
	}
	return Read{Conversation: c, Account: a, Device: d, MsgID: domain.MsgID(e.MsgID), At: time.UnixMilli(e.At),
		PushToOrigin: e.Via == events.ViaHTTP}, true, nil
}

// convState is a conversation's row: its newest message and how many it has.
type convState struct {
	Latest domain.MsgID
	Time   time.Time
	Count  int64
}

// cursor is an account's row in a conversation (see above).
type cursor struct {
	ReadMsgID  domain.MsgID
	ReadSeq    int64
	Sent       int64
	SentAtRead int64
}

// erased is what an erasure leaves of c: nothing read, but the count of
// what the account sent, which unread counts stay without (events.md:
// unread is what the account did not send). Zero: nothing to keep.
func (c cursor) erased() cursor { return cursor{Sent: c.Sent} }

func (c cursor) unread(count int64) int64 {
	if n := (count - c.ReadSeq) - (c.Sent - c.SentAtRead); n > 0 {
		return n
	}
	return 0
}

// counted is one message's row: its place among the conversation's
// messages and among its sender's.
type counted struct {
	Conversation domain.ConversationID
	MsgID        domain.MsgID
	Seq          int64
	Sender       domain.AccountID
	SenderSeq    int64
}

type cursorKey struct {
	c domain.ConversationID
	a domain.AccountID
}

// backing is the index as it was before a batch, as the tally reads it.
type backing interface {
	conv(c domain.ConversationID) (convState, bool, error)
	cursor(c domain.ConversationID, a domain.AccountID) (cursor, bool, error)
	// seqAt is the count of c's messages with msgid <= at.
	seqAt(c domain.ConversationID, at domain.MsgID) (int64, error)
	// sentAt is the count of a's messages in c with msgid <= at.
	sentAt(c domain.ConversationID, a domain.AccountID, at domain.MsgID) (int64, error)
}

// tally applies a batch in log order on top of a backing and keeps what
// changed, for the adapter to write in one go.
type tally struct {
	b       backing
	convs   map[domain.ConversationID]*convState
	fresh   map[domain.ConversationID]bool // no row before the batch
	cursors map[cursorKey]*cursor
	// dirty lists, in first-change order, what to write.
	dirtyConvs   []domain.ConversationID
	dirtyCursors []cursorKey
	isDirtyConv  map[domain.ConversationID]bool
	isDirtyCur   map[cursorKey]bool
	// added are the batch's new messages, in log order.
	added []counted
}

// tallies keeps tallies between batches: a batch is often a message or
// two, and making a tally's maps anew for each was most of what the
// index allocated.
var tallies = sync.Pool{New: func() any {
	return &tally{convs: map[domain.ConversationID]*convState{}, fresh: map[domain.ConversationID]bool{},
		cursors: map[cursorKey]*cursor{}, isDirtyConv: map[domain.ConversationID]bool{}, isDirtyCur: map[cursorKey]bool{}}
}}

// newTally returns an empty tally over b; release it once its writes are
// made.
func newTally(b backing) *tally {
	t := tallies.Get().(*tally)
	t.b = b
	return t
}

// release empties t and keeps it for another batch: nothing of it may be
// used afterwards.
func (t *tally) release() {
	t.b = nil
	clear(t.convs)
	clear(t.fresh)
	clear(t.cursors)
	clear(t.isDirtyConv)
	clear(t.isDirtyCur)
	clear(t.dirtyConvs)
	clear(t.dirtyCursors)
	clear(t.added)
	t.dirtyConvs, t.dirtyCursors, t.added = t.dirtyConvs[:0], t.dirtyCursors[:0], t.added[:0]
	tallies.Put(t)
}

func (t *tally) conv(c domain.ConversationID) (*convState, error) {
	if s, ok := t.convs[c]; ok {
		return s, nil
	}
	s, ok, err := t.b.conv(c)
	if err != nil {
		return nil, err
	}
	t.convs[c], t.fresh[c] = &s, !ok
	return &s, nil
}

// cursor is a's cursor in c. A conversation the index did not hold before
// the batch has no cursors there either (a cursor is written only with
// its conversation's state, which is never removed), so a new
// conversation's first message costs no lookup of its sender's cursor.
func (t *tally) cursor(c domain.ConversationID, a domain.AccountID) (*cursor, error) {
	k := cursorKey{c, a}
	if s, ok := t.cursors[k]; ok {
		return s, nil
	}
	var s cursor
	if !t.fresh[c] {
		var err error
		if s, _, err = t.b.cursor(c, a); err != nil {
			return nil, err
		}
	}
	t.cursors[k] = &s
	return &s, nil
}

func (t *tally) touchConv(c domain.ConversationID) {
	if !t.isDirtyConv[c] {
		t.isDirtyConv[c] = true
		t.dirtyConvs = append(t.dirtyConvs, c)
	}
}

func (t *tally) touchCursor(k cursorKey) {
	if !t.isDirtyCur[k] {
		t.isDirtyCur[k] = true
		t.dirtyCursors = append(t.dirtyCursors, k)
	}
}

// apply applies recs in order; poison records are skipped.
func (t *tally) apply(recs []projections.Record) error {
	for _, r := range recs {
		if m, ok, err := r.Message(); ok && err == nil {
			if err := t.message(m); err != nil {
				return err
			}
			continue
		}
		if rd, ok, err := ReadOf(r); ok && err == nil {
			if err := t.read(rd); err != nil {
				return err
			}
		}
	}
	return nil
}

// message counts m unless its conversation already holds it or a newer
// one: msgids increase in log order, so that is a record seen again (I4).
func (t *tally) message(m domain.Message) error {
	s, err := t.conv(m.Conversation)
	if err != nil {
		return err
	}
	if s.Latest >= m.MsgID {
		return nil
	}
	cur, err := t.cursor(m.Conversation, m.Sender.Account)
	if err != nil {
		return err
	}
	s.Latest, s.Time, s.Count = m.MsgID, m.ServerTime, s.Count+1
	cur.Sent++
	t.touchConv(m.Conversation)
	t.touchCursor(cursorKey{m.Conversation, m.Sender.Account})
	t.added = append(t.added, counted{Conversation: m.Conversation, MsgID: m.MsgID, Seq: s.Count, Sender: m.Sender.Account, SenderSeq: cur.Sent})
	return nil
}

// read moves a cursor forward, never back; past the newest message it
// stops at the newest.
func (t *tally) read(rd Read) error {
	s, err := t.conv(rd.Conversation)
	if err != nil {
		return err
	}
	if s.Count == 0 && s.Latest == 0 {
		return nil // nothing to read
	}
	cur, err := t.cursor(rd.Conversation, rd.Account)
	if err != nil {
		return err
	}
	at := min(rd.MsgID, s.Latest)
	if at <= cur.ReadMsgID {
		return nil
	}
	if at == s.Latest {
		cur.ReadSeq, cur.SentAtRead = s.Count, cur.Sent
	} else {
		if cur.ReadSeq, err = t.seqAt(rd.Conversation, at); err != nil {
			return err
		}
		if cur.SentAtRead, err = t.sentAt(rd.Conversation, rd.Account, at); err != nil {
			return err
		}
	}
	cur.ReadMsgID = at
	t.touchCursor(cursorKey{rd.Conversation, rd.Account})
	return nil
}

// seqAt looks in the batch's own messages first: they all come after what
// the backing holds.
func (t *tally) seqAt(c domain.ConversationID, at domain.MsgID) (int64, error) {
	for i := len(t.added) - 1; i >= 0; i-- {
		if a := t.added[i]; a.Conversation == c && a.MsgID <= at {
			return a.Seq, nil
		}
	}
	n, err := t.b.seqAt(c, at)
	if err != nil {
		return 0, fmt.Errorf("cannot count the messages of %s: %w", c, err)
	}
	return n, nil
}

func (t *tally) sentAt(c domain.ConversationID, who domain.AccountID, at domain.MsgID) (int64, error) {
	for i := len(t.added) - 1; i >= 0; i-- {
		if a := t.added[i]; a.Conversation == c && a.Sender == who && a.MsgID <= at {
			return a.SenderSeq, nil
		}
	}
	n, err := t.b.sentAt(c, who, at)
	if err != nil {
		return 0, fmt.Errorf("cannot count the messages of %s in %s: %w", who, c, err)
	}
	return n, nil
}

// keysOf lists the conversations and cursors a batch may touch, so that an
// adapter can read them all at once.
func keysOf(recs []projections.Record) ([]domain.ConversationID, []cursorKey) {
	seenC := map[domain.ConversationID]bool{}
	seenK := map[cursorKey]bool{}
	var convs []domain.ConversationID
	var keys []cursorKey
	add := func(c domain.ConversationID, a domain.AccountID) {
		if !seenC[c] {
			seenC[c] = true
			convs = append(convs, c)
		}
		if k := (cursorKey{c, a}); !seenK[k] {
			seenK[k] = true
			keys = append(keys, k)
		}
	}
	for _, r := range recs {
		if m, ok, err := r.Message(); ok && err == nil {
			add(m.Conversation, m.Sender.Account)
		} else if rd, ok, err := ReadOf(r); ok && err == nil {
			add(rd.Conversation, rd.Account)
		}
	}
	return convs, keys
}

// eraseRuns hands apply the records of recs between erasures (AccountErased
// records), and erase each erasure, in log order: an erasure removes the
// account's read cursors in the conversations in accepts (the others'
// cursors and counts stay exact: they do not depend on the account's),
// and records the progress through its position, as apply does.
func eraseRuns(ctx context.Context, recs []projections.Record, apply func(context.Context, []projections.Record) error,
	erase func(context.Context, domain.AccountID, func(domain.ConversationID) bool, events.Position) error) error {
	start := 0
	for i, r := range recs {
		e, in, ok, err := r.Erasure()
		if !ok || err != nil {
			continue // poison is skipped like any other
		}
		if i > start {
			if err := apply(ctx, recs[start:i]); err != nil {
				return err
			}
		}
		if err := erase(ctx, e.Account, in, r.Position); err != nil {
			return err
		}
		start = i + 1
	}
	if start < len(recs) {
		return apply(ctx, recs[start:])
	}
	return nil
}
