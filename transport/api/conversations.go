package api

import (
	"context"
	"fmt"
	"sync"
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

// ConversationsPerRead is how many conversations one read of the read
// budget pays for in a conversation list: a list looks at every
// conversation of the account, whatever it answers, so one of an account
// with 100,000 conversations costs 1,000 reads.
const ConversationsPerRead = 100

// EmptyGroupsPerRead is how many groups without a message one read pays
// for in a list: each costs about a tenth of a conversation
// (BenchmarkPebbleList), and since anyone may add an account to groups,
// others' empty groups raise its lists' cost little.
const EmptyGroupsPerRead = 1000

// ConversationsQuery selects a page of an account's conversation list.
type ConversationsQuery struct {
	// Since keeps the conversations with a message after it.
	Since time.Time
	// Limit is the page's size: 0 or past MaxConversations means
	// MaxConversations.
	Limit int
	// Before and BeforeConversation are the last entry of the page before
	// (its latest time and conversation): the page goes on after it.
	// Zero for the first page.
	Before             time.Time
	BeforeConversation string
}

// Conversations lists a page of who's conversations, newest first, once
// the list has applied everything acknowledged before the call, each with
// who's mute of it; more is set when the list goes on after the page. A
// negative limit, since or before is invalid. The list takes one read of
// by's read budget before it is made, and one more for every further
// ConversationsPerRead conversations it looked at once it is.
func (s *Service) Conversations(ctx context.Context, by Actor, q ConversationsQuery) (list []Conversation, more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if !by.Trusted {
		leave, err := s.listing.enter(ctx, string(by.Account))
		if err != nil {
			return nil, false, fmt.Errorf("another conversation list of this account is under way: %w: %v", ErrUnavailable, err)
		}
		defer leave()
	}
	if err := s.spendRead(by); err != nil {
		return nil, false, err
	}
	who := by.Account
	cq := conversations.Query{Since: q.Since, Limit: q.Limit}
	switch {
	case q.Limit < 0:
		return nil, false, &domain.InvalidError{Field: "limit", Reason: "is negative"}
	case !q.Since.IsZero() && q.Since.UnixMilli() < 0:
		return nil, false, &domain.InvalidError{Field: "since", Reason: "is negative"}
	case !q.Before.IsZero() && q.Before.UnixMilli() < 0:
		return nil, false, &domain.InvalidError{Field: "before", Reason: "is negative"}
	case q.BeforeConversation != "" && q.Before.IsZero():
		return nil, false, &domain.InvalidError{Field: "beforeConversation", Reason: "needs before"}
	}
	if !q.Before.IsZero() {
		cq.After.Time = q.Before
		if q.BeforeConversation != "" {
			if cq.After.Conversation, err = domain.ParseConversationID(q.BeforeConversation); err != nil {
				return nil, false, &domain.InvalidError{Field: "beforeConversation", Reason: "is not a conversation id"}
			}
		}
	}
	if cq.Limit == 0 || cq.Limit > MaxConversations {
		cq.Limit = MaxConversations
	}
	if err := s.catchUpAll(ctx, s.rm.GroupsProgress, s.rm.ConversationsProgress); err != nil {
		return nil, false, err
	}
	gs, err := s.rm.Groups.GroupIDsOf(ctx, who) // ids only: no members read
	if err != nil {
		return nil, false, fmt.Errorf("cannot read the groups of %s: %w: %v", who, ErrUnavailable, err)
	}
	page, err := s.rm.Conversations.List(ctx, who, gs, cq)
	if err != nil {
		return nil, false, fmt.Errorf("cannot read the conversations of %s: %w: %v", who, ErrUnavailable, err)
	}
	s.chargeReads(by, (page.Considered-1)/ConversationsPerRead+page.EmptyGroups/EmptyGroupsPerRead)
	out := make([]Conversation, len(page.Entries))
	for i, l := range page.Entries {
		out[i].Latest = l
	}
	out, err = s.withMutes(ctx, who, out)
	return out, page.More, err
}

// oneAtATime lets one holder of each key in at a time; the others wait.
type oneAtATime struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// enter waits until key is free, or ctx ends, and holds it until leave.
func (g *oneAtATime) enter(ctx context.Context, key string) (leave func(), err error) {
	for {
		g.mu.Lock()
		busy, ok := g.held[key]
		if !ok {
			if g.held == nil {
				g.held = map[string]chan struct{}{}
			}
			done := make(chan struct{})
			g.held[key] = done
			g.mu.Unlock()
			return func() {
				g.mu.Lock()
				delete(g.held, key)
				g.mu.Unlock()
				close(done)
			}, nil
		}
		g.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
