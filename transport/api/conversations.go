package api

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/conversations"
)

// MaxConversations bounds one conversation list.
const MaxConversations = 1000

// Conversations lists who's conversations that changed after since, newest
// first, once the list has applied everything acknowledged before the call.
func (s *Service) Conversations(ctx context.Context, who domain.AccountID, since time.Time, limit int) ([]conversations.Latest, error) {
	if limit <= 0 || limit > MaxConversations {
		limit = MaxConversations
	}
	ends, err := s.log.EndOffsets()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.rm.GroupsProgress.WaitForAll(ctx, ends); err != nil {
		return nil, fmt.Errorf("groups are behind the log: %w: %v", ErrUnavailable, err)
	}
	if err := s.rm.ConversationsProgress.WaitForAll(ctx, ends); err != nil {
		return nil, fmt.Errorf("conversation list is behind the log: %w: %v", ErrUnavailable, err)
	}
	var gs []domain.GroupID
	for _, g := range s.rm.Groups.GroupsOf(who) {
		gs = append(gs, g.ID())
	}
	return s.rm.Conversations.List(who, gs, since, limit), nil
}
