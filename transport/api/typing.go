package api

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// Typing authorizes who to signal typing in conversation and returns the
// accounts whose devices get the signal: the conversation's other
// participants. Nothing is written to the log.
func (s *Service) Typing(ctx context.Context, who domain.AccountID, conversation string) (domain.ConversationID, []domain.AccountID, error) {
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return domain.ConversationID{}, nil, err
	}
	if err := s.authorizeRead(ctx, who, conv); err != nil {
		return domain.ConversationID{}, nil, err
	}
	if conv.Kind() == domain.KindDirect {
		if peer := conv.Peer(who); peer != who {
			return conv, []domain.AccountID{peer}, nil
		}
		return conv, nil, nil
	}
	g, ok, err := s.rm.Groups.Group(ctx, conv.Group())
	if err != nil {
		return domain.ConversationID{}, nil, fmt.Errorf("cannot read group %s: %w: %v", conv.Group(), ErrUnavailable, err)
	}
	if !ok {
		return domain.ConversationID{}, nil, fmt.Errorf("group %s: %w", conv.Group(), domain.ErrNotFound)
	}
	var out []domain.AccountID
	for _, m := range g.Members() {
		if m != who {
			out = append(out, m)
		}
	}
	return conv, out, nil
}
