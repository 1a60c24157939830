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

// Conversation is one entry of an account's conversation list: the
// index's entry, and the account's mute of it.
type Conversation struct {
	conversations.Latest
	Mute MuteState
}

// Conversations lists who's conversations that changed after since, newest
// first (at most limit, 0 or past MaxConversations meaning MaxConversations;
// a negative limit or since is invalid), once the list has applied everything acknowledged before the call,
// each with who's mute of it.
func (s *Service) Conversations(ctx context.Context, by Actor, since time.Time, limit int) ([]Conversation, error) {
	if err := s.spendRead(by); err != nil {
		return nil, err
	}
	who := by.Account
	switch {
	case limit < 0:
		return nil, &domain.InvalidError{Field: "limit", Reason: "is negative"}
	case !since.IsZero() && since.UnixMilli() < 0:
		return nil, &domain.InvalidError{Field: "since", Reason: "is negative"}
	}
	if limit == 0 || limit > MaxConversations {
		limit = MaxConversations
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.catchUpAll(ctx, s.rm.GroupsProgress, s.rm.ConversationsProgress); err != nil {
		return nil, err
	}
	gs, err := s.rm.Groups.GroupIDsOf(ctx, who) // ids only: no members read
	if err != nil {
		return nil, fmt.Errorf("cannot read the groups of %s: %w: %v", who, ErrUnavailable, err)
	}
	list, err := s.rm.Conversations.List(ctx, who, gs, since, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot read the conversations of %s: %w: %v", who, ErrUnavailable, err)
	}
	out := make([]Conversation, len(list))
	for i, l := range list {
		out[i].Latest = l
	}
	return s.withMutes(ctx, who, out)
}
