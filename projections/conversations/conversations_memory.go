package conversations

import (
	"context"
	"sort"
	"sync"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Memory keeps the index in memory: for tests and tools, not for a server,
// whose index must outlive the log (see Pebble, Postgres).
type Memory struct {
	mu       sync.RWMutex
	convs    map[domain.ConversationID]convState
	directOf map[domain.AccountID]map[domain.ConversationID]struct{}
	cursors  map[cursorKey]cursor
	// msgs and own are each conversation's messages, and each sender's in
	// it, in msgid order, for reads up to an older msgid.
	msgs map[domain.ConversationID][]counted
	own  map[cursorKey][]counted
}

var _ Index = (*Memory)(nil)

// NewMemory returns an empty index.
func NewMemory() *Memory {
	return &Memory{convs: map[domain.ConversationID]convState{}, directOf: map[domain.AccountID]map[domain.ConversationID]struct{}{},
		cursors: map[cursorKey]cursor{}, msgs: map[domain.ConversationID][]counted{}, own: map[cursorKey][]counted{}}
}

// memoryBacking reads the maps; the caller holds the lock.
type memoryBacking struct{ m *Memory }

func (b memoryBacking) conv(c domain.ConversationID) (convState, bool, error) {
	s, ok := b.m.convs[c]
	return s, ok, nil
}

func (b memoryBacking) cursor(c domain.ConversationID, a domain.AccountID) (cursor, bool, error) {
	s, ok := b.m.cursors[cursorKey{c, a}]
	return s, ok, nil
}

func (b memoryBacking) seqAt(c domain.ConversationID, at domain.MsgID) (int64, error) {
	return lastAtOrBefore(b.m.msgs[c], at, func(x counted) int64 { return x.Seq }), nil
}

func (b memoryBacking) sentAt(c domain.ConversationID, a domain.AccountID, at domain.MsgID) (int64, error) {
	return lastAtOrBefore(b.m.own[cursorKey{c, a}], at, func(x counted) int64 { return x.SenderSeq }), nil
}

func lastAtOrBefore(xs []counted, at domain.MsgID, f func(counted) int64) int64 {
	i := sort.Search(len(xs), func(i int) bool { return xs[i].MsgID > at })
	if i == 0 {
		return 0
	}
	return f(xs[i-1])
}

// ApplyBatch implements projections.Batcher. A record that fails
// validation is skipped.
func (m *Memory) applyBatch(_ context.Context, recs []projections.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := newTally(memoryBacking{m})
	defer t.release()
	if err := t.apply(recs); err != nil {
		return err
	}
	for _, c := range t.dirtyConvs {
		m.convs[c] = *t.convs[c]
		if !t.fresh[c] {
			continue
		}
		for _, a := range participants(c) {
			set := m.directOf[a]
			if set == nil {
				set = map[domain.ConversationID]struct{}{}
				m.directOf[a] = set
			}
			set[c] = struct{}{}
		}
	}
	for _, k := range t.dirtyCursors {
		m.cursors[k] = *t.cursors[k]
	}
	for _, a := range t.added {
		m.msgs[a.Conversation] = append(m.msgs[a.Conversation], a)
		k := cursorKey{a.Conversation, a.Sender}
		m.own[k] = append(m.own[k], a)
	}
	return nil
}

// Apply implements projections.Projection: a batch of one. A MessageSent
// that fails validation is poison.
func (m *Memory) Apply(ctx context.Context, r projections.Record) error {
	if _, ok, err := r.Message(); ok && err != nil {
		return err
	}
	if _, ok, err := ReadOf(r); ok && err != nil {
		return err
	}
	return m.ApplyBatch(ctx, []projections.Record{r})
}

// List implements Index.
func (m *Memory) List(_ context.Context, account domain.AccountID, groups []domain.GroupID, q Query) (Page, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var convs []domain.ConversationID
	for c := range m.directOf[account] {
		convs = append(convs, c)
	}
	for _, g := range groups {
		convs = append(convs, domain.GroupConversation(g))
	}
	var out []Latest
	empty := 0
	for _, c := range convs {
		s, ok := m.convs[c]
		if !ok {
			empty++ // only a group is listed without a state
			continue
		}
		cur := m.cursors[cursorKey{c, account}]
		out = append(out, Latest{Conversation: c, MsgID: s.Latest, Time: s.Time, ReadMsgID: cur.ReadMsgID, Unread: cur.unread(s.Count)})
	}
	return newestFirst(out, q, empty), nil
}

// ReadState implements Reads.
func (m *Memory) ReadState(_ context.Context, c domain.ConversationID, account domain.AccountID) (ReadState, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, cur := m.convs[c], m.cursors[cursorKey{c, account}]
	return ReadState{Latest: s.Latest, ReadMsgID: cur.ReadMsgID, Unread: cur.unread(s.Count)}, nil
}

// ReadMsgIDs implements Reads.
func (m *Memory) ReadMsgIDs(_ context.Context, c domain.ConversationID, accounts []domain.AccountID) ([]domain.MsgID, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]domain.MsgID, len(accounts))
	for i, a := range accounts {
		out[i] = m.cursors[cursorKey{c, a}].ReadMsgID
	}
	return out, nil
}

// ApplyBatch implements projections.Batcher: the records between
// erasures as one batch each, and each erasure after the records before
// it.
func (m *Memory) ApplyBatch(ctx context.Context, recs []projections.Record) error {
	return eraseRuns(ctx, recs, m.applyBatch, m.erase)
}

func (m *Memory) erase(_ context.Context, a domain.AccountID, in func(domain.ConversationID) bool, _ events.Position) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.cursors {
		if k.a == a && in(k.c) {
			if left := c.erased(); left != (cursor{}) {
				m.cursors[k] = left
			} else {
				delete(m.cursors, k)
			}
		}
	}
	return nil
}
