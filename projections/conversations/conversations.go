// Package conversations is the conversation list read model: for each
// conversation its latest msgid and time, and for each account its direct
// conversations, so a returning client learns what to sync.
package conversations

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Name is the projection's stable name.
const Name = "parley.projection.conversations"

// Latest is a conversation's newest message.
type Latest struct {
	Conversation domain.ConversationID
	MsgID        domain.MsgID
	Time         time.Time
}

// Memory keeps the list in memory, rebuilt from the log at start.
type Memory struct {
	mu       sync.RWMutex
	latest   map[domain.ConversationID]Latest
	directOf map[domain.AccountID]map[domain.ConversationID]struct{}
}

// NewMemory returns an empty model.
func NewMemory() *Memory {
	return &Memory{latest: map[domain.ConversationID]Latest{}, directOf: map[domain.AccountID]map[domain.ConversationID]struct{}{}}
}

// Apply implements projections.Projection; replays change nothing because
// only a newer msgid moves a conversation's latest.
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
	if msg.Conversation.Kind() == domain.KindDirect {
		a, b := msg.Conversation.Accounts()
		for _, acc := range []domain.AccountID{a, b} {
			set := m.directOf[acc]
			if set == nil {
				set = map[domain.ConversationID]struct{}{}
				m.directOf[acc] = set
			}
			set[msg.Conversation] = struct{}{}
		}
	}
	return nil
}

// List returns the conversations of account (its direct ones and those of
// groups) whose latest message is newer than since, newest first, at most limit.
func (m *Memory) List(account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) []Latest {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Latest
	add := func(c domain.ConversationID) {
		if l, ok := m.latest[c]; ok && l.Time.After(since) {
			out = append(out, l)
		}
	}
	for c := range m.directOf[account] {
		add(c)
	}
	for _, g := range groups {
		add(domain.GroupConversation(g))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].Conversation.String() < out[j].Conversation.String()
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
