package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
)

// MuteState is an account's mute of one conversation.
type MuteState struct {
	Muted bool
	// Until is when the mute ends; zero for a mute without end.
	Until time.Time
}

// Mute mutes conversation's offline notifications for by's account until
// untilMs (Unix ms); 0 mutes until unmuted, and a time that has passed
// unmutes (docs/protocol.md, mute). Only a participant may mute a
// conversation. A mute or unmute is a durable write: it costs SendCost
// from by's send budget, unless refused (or failed) first.
func (s *Service) Mute(ctx context.Context, by Actor, conversation string, untilMs int64) (MuteState, error) {
	who := by.Account
	conv, err := s.muteTarget(ctx, who, conversation)
	if err != nil {
		return MuteState{}, err
	}
	if untilMs < 0 {
		return MuteState{}, &domain.InvalidError{Field: "until", Reason: "must be 0 (no end) or Unix milliseconds"}
	}
	until := time.Time{}
	if untilMs > 0 {
		until = time.UnixMilli(untilMs)
		if !until.After(s.cfg.Now()) {
			return s.unmute(ctx, by, conv)
		}
	}
	if err := s.writable(); err != nil {
		return MuteState{}, err
	}
	cost, err := s.spend(by, SendCost, muteCostText)
	if err != nil {
		return MuteState{}, err
	}
	if err := s.rm.Mutes.Mute(ctx, who, conv, until); err != nil {
		cost.giveBack()
		return MuteState{}, muteError(err)
	}
	return MuteState{Muted: true, Until: until}, nil
}

// Unmute ends by's account's mute of conversation, if any, at the same
// cost as a mute.
func (s *Service) Unmute(ctx context.Context, by Actor, conversation string) (MuteState, error) {
	conv, err := s.muteTarget(ctx, by.Account, conversation)
	if err != nil {
		return MuteState{}, err
	}
	return s.unmute(ctx, by, conv)
}

func (s *Service) unmute(ctx context.Context, by Actor, conv domain.ConversationID) (MuteState, error) {
	if err := s.writable(); err != nil {
		return MuteState{}, err
	}
	cost, err := s.spend(by, SendCost, muteCostText)
	if err != nil {
		return MuteState{}, err
	}
	if err := s.rm.Mutes.Unmute(ctx, by.Account, conv); err != nil {
		cost.giveBack()
		return MuteState{}, muteError(err)
	}
	return MuteState{}, nil
}

// muteTarget parses conversation and checks that who takes part in it.
func (s *Service) muteTarget(ctx context.Context, who domain.AccountID, conversation string) (domain.ConversationID, error) {
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return domain.ConversationID{}, err
	}
	if err := s.authorizeRead(ctx, who, conv); err != nil {
		return domain.ConversationID{}, err
	}
	return conv, nil
}

// muteError passes the bound on mutes on and makes any other failure of
// the store unavailable.
func muteError(err error) error {
	if errors.Is(err, domain.ErrTooLarge) {
		return err
	}
	return fmt.Errorf("cannot store the mute: %w: %v", ErrUnavailable, err)
}

// withMutes adds who's mutes in force to a conversation list.
func (s *Service) withMutes(ctx context.Context, who domain.AccountID, list []Conversation) ([]Conversation, error) {
	mutes, err := s.rm.Mutes.MutesOf(ctx, who, s.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("cannot read the mutes of %s: %w: %v", who, ErrUnavailable, err)
	}
	if len(mutes) == 0 {
		return list, nil
	}
	for i := range list {
		if until, ok := mutes[list[i].Conversation]; ok {
			list[i].Mute = MuteState{Muted: true, Until: until}
		}
	}
	return list, nil
}

// UnixMilli is t in Unix milliseconds, 0 for the zero time (a mute
// without end).
func UnixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
