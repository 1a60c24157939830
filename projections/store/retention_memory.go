package store

import (
	"context"
	"sort"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Expired implements Store.
func (s *Memory) Expired(_ context.Context, cutoff time.Time, max int) ([]Floor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Floor
	budget := max
	for conv, list := range s.convs {
		if budget <= 0 {
			break
		}
		through, n, ok := expiredRun(list[:min(len(list), budget)], cutoff)
		if !ok {
			continue
		}
		out = append(out, Floor{Conversation: conv, Through: through, Messages: n})
		budget -= n
	}
	return out, nil
}

// Remove implements Store.
func (s *Memory) Remove(_ context.Context, floors ...Floor) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := 0
	for _, f := range floors {
		if cur, ok := s.floors[f.Conversation]; !ok || f.Through > cur {
			s.floors[f.Conversation] = f.Through
		}
		list := s.convs[f.Conversation]
		i := sort.Search(len(list), func(i int) bool { return list[i].MsgID > f.Through })
		for _, m := range list[:i] {
			delete(s.byID, m.ID)
			k := clientKey{m.Sender.Account, m.ClientMsgID}
			if p := s.byClient[k]; p.conv == m.Conversation && p.id == m.MsgID {
				delete(s.byClient, k)
			}
		}
		removed += i
		if i == len(list) {
			delete(s.convs, f.Conversation)
		} else {
			s.convs[f.Conversation] = append([]domain.Message(nil), list[i:]...)
		}
	}
	return removed, nil
}

// GoneThrough implements Store.
func (s *Memory) GoneThrough(_ context.Context, conv domain.ConversationID) (domain.MsgID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.floors[conv], nil
}
