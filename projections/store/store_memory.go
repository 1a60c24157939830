package store

import (
	"context"
	"sort"
	"sync"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
)

// Memory is an in-memory Store: the embedded default, rebuilt from the log
// at every start.
type Memory struct {
	mu       sync.RWMutex
	convs    map[domain.ConversationID][]domain.Message
	byID     map[uuid.UUID]struct{}
	byClient map[clientKey]pointerTo
	floors   map[domain.ConversationID]domain.MsgID
}

// pointerTo is where a message is.
type pointerTo struct {
	conv domain.ConversationID
	id   domain.MsgID
}

type clientKey struct {
	account domain.AccountID
	id      string
}

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{
		convs:    map[domain.ConversationID][]domain.Message{},
		byID:     map[uuid.UUID]struct{}{},
		byClient: map[clientKey]pointerTo{},
		floors:   map[domain.ConversationID]domain.MsgID{},
	}
}

// Save implements Store.
func (s *Memory) Save(_ context.Context, msgs ...domain.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if _, dup := s.byID[m.ID]; dup {
			continue
		}
		if floor, ok := s.floors[m.Conversation]; ok && m.MsgID <= floor {
			continue // removed by the retention: a replay does not bring it back
		}
		list := s.convs[m.Conversation]
		i := sort.Search(len(list), func(i int) bool { return list[i].MsgID >= m.MsgID })
		if i < len(list) && list[i].MsgID == m.MsgID {
			continue
		}
		if i == len(list) {
			list = append(list, m)
		} else {
			list = append(list, domain.Message{})
			copy(list[i+1:], list[i:])
			list[i] = m
		}
		s.convs[m.Conversation] = list
		s.byID[m.ID] = struct{}{}
		k := clientKey{m.Sender.Account, m.ClientMsgID}
		if _, ok := s.byClient[k]; !ok {
			s.byClient[k] = pointerTo{m.Conversation, m.MsgID}
		}
	}
	return nil
}

// After implements Store.
func (s *Memory) After(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return page(s.convs[conv], after, limit)
}

// page returns up to limit messages of list (in msgid order) after after.
func page(list []domain.Message, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	i := sort.Search(len(list), func(i int) bool { return list[i].MsgID > after })
	rest := list[i:]
	more := len(rest) > limit
	if more {
		rest = rest[:limit]
	}
	return append([]domain.Message(nil), rest...), more, nil
}

// Changes implements Store. It walks conv's messages up to after: the
// embedded store is small enough, and changes are rare.
func (s *Memory) Changes(_ context.Context, conv domain.ConversationID, after domain.MsgID, limit int) ([]domain.Message, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []domain.Message
	for _, m := range s.convs[conv] {
		if m.MsgID > after {
			break
		}
		if m.Revision > after {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// ByClientMsgID implements Store.
func (s *Memory) ByClientMsgID(_ context.Context, account domain.AccountID, clientMsgID string) (domain.Message, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.byClient[clientKey{account, clientMsgID}]
	if !ok {
		return domain.Message{}, false, nil
	}
	m, ok := s.messageLocked(p.conv, p.id)
	return m, ok, nil
}

func (s *Memory) messageLocked(conv domain.ConversationID, id domain.MsgID) (domain.Message, bool) {
	list := s.convs[conv]
	i := sort.Search(len(list), func(i int) bool { return list[i].MsgID >= id })
	if i < len(list) && list[i].MsgID == id {
		return list[i], true
	}
	return domain.Message{}, false
}

// Message implements Store.
func (s *Memory) Message(_ context.Context, conv domain.ConversationID, id domain.MsgID) (domain.Message, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.messageLocked(conv, id)
	return m, ok, nil
}

// Amend implements Store.
func (s *Memory) Amend(_ context.Context, changes ...domain.Amendment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range changes {
		list := s.convs[a.Conversation]
		i := sort.Search(len(list), func(i int) bool { return list[i].MsgID >= a.MsgID })
		if i == len(list) || list[i].MsgID != a.MsgID {
			continue
		}
		m, ok := a.Apply(list[i])
		if !ok {
			continue
		}
		list[i] = m
		if !a.Delete {
			k := clientKey{a.By.Account, a.ClientMsgID}
			if _, used := s.byClient[k]; !used {
				s.byClient[k] = pointerTo{a.Conversation, a.MsgID}
			}
		}
	}
	return nil
}

// Erase implements Store.
func (s *Memory) Erase(_ context.Context, e domain.Erasure, in func(domain.ConversationID) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, list := range s.convs {
		if !in(c) {
			continue
		}
		for i, m := range list {
			if m, ok := e.Apply(m); ok {
				list[i] = m
			}
		}
	}
	return nil
}
