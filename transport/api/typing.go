package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// TypingInterval is the least time between two typing signals of one
// account in one conversation that are passed on (per gateway).
const TypingInterval = time.Second

// TypingCost is what a typing signal costs its account's send budget for
// each account it is pushed to: about the bytes of its push (the
// conversation and the account, up to 64 bytes each, in a frame of some
// 50). The budget bounds what one account pushes at others, and a typing
// signal to a group is pushed to every other member: without it, one
// account typing in many large groups would push hundreds of frames for
// each one it sends.
const TypingCost = 128

// maxTypingKeys bounds the throttle's memory: past it, it forgets the
// keys whose interval has passed (which a signal would pass anyway), and
// starts over only if they all typed within the interval (which lets at
// most one extra signal through per key).
const maxTypingKeys = 1 << 16

var typingCostText = fmt.Sprintf("a typing signal costs %d for each account it is pushed to", TypingCost)

type typingKey struct {
	a domain.AccountID
	c domain.ConversationID
}

// typingThrottle remembers when each account last typed in each
// conversation.
type typingThrottle struct {
	mu   sync.Mutex
	last map[typingKey]time.Time
}

// allow reports whether a signal of k at now may pass, and how long to
// wait if not.
func (t *typingThrottle) allow(k typingKey, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.last[k]; ok && now.Sub(at) < TypingInterval {
		return false, TypingInterval - now.Sub(at)
	}
	if t.last == nil {
		t.last = map[typingKey]time.Time{}
	}
	if len(t.last) >= maxTypingKeys {
		fresh := map[typingKey]time.Time{}
		for key, at := range t.last {
			if now.Sub(at) < TypingInterval {
				fresh[key] = at
			}
		}
		if len(fresh) >= maxTypingKeys/2 {
			fresh = map[typingKey]time.Time{} // a flood of keys: start over
		}
		t.last = fresh
	}
	t.last[k] = now
	return true, 0
}

// forget takes back the signal of k allowed at at, which did not pass
// after all, unless a later one was allowed since.
func (t *typingThrottle) forget(k typingKey, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.last[k]; ok && last.Equal(at) {
		delete(t.last, k)
	}
}

// Typing authorizes who to signal typing in conversation and returns the
// accounts whose devices get the signal: the conversation's other
// participants. Nothing is written to the log. A signal within
// TypingInterval of who's last one in the conversation (free), or one
// whose pushes the send budget does not hold (TypingCost each), is
// refused with a LimitError.
func (s *Service) Typing(ctx context.Context, who domain.AccountID, conversation string) (domain.ConversationID, []domain.AccountID, error) {
	conv, err := domain.ParseConversationID(conversation)
	if err != nil {
		return domain.ConversationID{}, nil, err
	}
	if err := s.authorizeRead(ctx, who, conv); err != nil {
		return domain.ConversationID{}, nil, err
	}
	out, err := s.typingRecipients(ctx, who, conv)
	if err != nil {
		return domain.ConversationID{}, nil, err
	}
	k, now := typingKey{who, conv}, s.cfg.Now()
	if ok, wait := s.typing.allow(k, now); !ok {
		return domain.ConversationID{}, nil, &LimitError{RetryAfter: wait, Reason: "at most one typing signal per second per conversation"}
	}
	if len(out) > 0 {
		if _, err := s.spend(Actor{Account: who}, TypingCost*len(out), typingCostText); err != nil {
			s.typing.forget(k, now) // nothing was pushed
			return domain.ConversationID{}, nil, err
		}
	}
	return conv, out, nil
}

// typingRecipients are the participants of conv other than who.
func (s *Service) typingRecipients(ctx context.Context, who domain.AccountID, conv domain.ConversationID) ([]domain.AccountID, error) {
	if conv.Kind() == domain.KindDirect {
		if peer := conv.Peer(who); peer != who {
			return []domain.AccountID{peer}, nil
		}
		return nil, nil
	}
	g, ok, err := s.rm.Groups.Group(ctx, conv.Group())
	if err != nil {
		return nil, fmt.Errorf("cannot read group %s: %w: %v", conv.Group(), ErrUnavailable, err)
	}
	if !ok {
		return nil, fmt.Errorf("group %s: %w", conv.Group(), domain.ErrNotFound)
	}
	var out []domain.AccountID
	for _, m := range g.Members() {
		if m != who {
			out = append(out, m)
		}
	}
	return out, nil
}
