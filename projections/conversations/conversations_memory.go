package conversations

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Memory keeps the index in memory: for tests and tools, not for a server,
// whose index must outlive the log (see Pebble, Postgres).
type Memory struct {
	mu       sync.RWMutex
	latest   map[domain.ConversationID]Latest
	directOf map[domain.AccountID]map[domain.ConversationID]struct{}
}

var _ Index = (*Memory)(nil)

// NewMemory returns an empty index.
func NewMemory() *Memory {
	return &Memory{latest: map[domain.ConversationID]Latest{}, directOf: map[domain.AccountID]map[domain.ConversationID]struct{}{}}
}

// Apply implements projections.Projection. A MessageSent that fails
// validation is poison.
func (m *Memory) Apply(_ context.Context, r projections.Record) error {
	msg, ok, err := r.Message()
	if !ok || err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.latest[msg.Conversation]; ok && cur.MsgID >= msg.MsgID {
		return nil
	}
	m.latest[msg.Conversation] = Latest{Conversation: msg.Conversation, MsgID: msg.MsgID, Time: msg.ServerTime}
	for _, a := range participants(msg.Conversation) {
		set := m.directOf[a]
		if set == nil {
			set = map[domain.ConversationID]struct{}{}
			m.directOf[a] = set
		}
		set[msg.Conversation] = struct{}{}
	}
	return nil
}

// List implements Index.
func (m *Memory) List(_ context.Context, account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) ([]Latest, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Latest
	for c := range m.directOf[account] {
		out = append(out, m.latest[c])
	}
	for _, g := range groups {
		if l, ok := m.latest[domain.GroupConversation(g)]; ok {
			out = append(out, l)
		}
	}
	return newestFirst(out, since, limit), nil
}
