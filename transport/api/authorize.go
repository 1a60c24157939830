package api

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// authorizeRead checks that who may read conv: one of the two accounts of a
// direct conversation, a member of a group.
func (s *Service) authorizeRead(ctx context.Context, who domain.AccountID, conv domain.ConversationID) error {
	if conv.Kind() == domain.KindDirect {
		if !conv.HasParticipant(who) {
			return fmt.Errorf("%s is not in %s: %w", who, conv, domain.ErrForbidden)
		}
		return nil
	}
	return s.authorizeGroup(ctx, conv, who)
}

// authorizeGroup checks that who is a member of conv's group. A refusal is
// checked again after the groups model has caught up with the log: another
// instance may have created the group or added who a moment ago.
func (s *Service) authorizeGroup(ctx context.Context, conv domain.ConversationID, who domain.AccountID) error {
	exists, member, err := s.rm.Groups.IsMember(ctx, conv.Group(), who)
	if err != nil {
		return fmt.Errorf("cannot read group %s: %w: %v", conv.Group(), ErrUnavailable, err)
	}
	if !exists || !member {
		if err := s.catchUp(ctx, s.rm.GroupsProgress, conv); err != nil {
			return err
		}
		g, ok, err := s.freshGroup(ctx, conv.Group())
		if err != nil {
			return err
		}
		exists, member = ok, ok && g.IsMember(who)
	}
	if !exists {
		return fmt.Errorf("group %s: %w", conv.Group(), domain.ErrNotFound)
	}
	if !member {
		return fmt.Errorf("%s is not in group %s: %w", who, conv.Group(), domain.ErrNotMember)
	}
	return nil
}

// freshGroup reads group g past any cache.
func (s *Service) freshGroup(ctx context.Context, g domain.GroupID) (*domain.Group, bool, error) {
	var grp *domain.Group
	var ok bool
	var err error
	if r, cached := s.rm.Groups.(Refresher); cached {
		grp, ok, err = r.Refresh(ctx, g)
	} else {
		grp, ok, err = s.rm.Groups.Group(ctx, g)
	}
	if err != nil {
		return nil, false, fmt.Errorf("cannot read group %s: %w: %v", g, ErrUnavailable, err)
	}
	return grp, ok, nil
}
