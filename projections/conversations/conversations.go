// Package conversations is the conversation index: for each conversation
// its latest msgid and time, and for each account its direct
// conversations, so that a returning client learns what to sync. It lives
// in memory (tests), in the embedded store (a single node) or in
// PostgreSQL (scale-out); every adapter passes conversationstest.
package conversations

import (
	"context"
	"sort"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Name is the projection's stable name.
const Name = "parley.projection.conversations"

// Latest is a conversation's newest message and, in a list, the listing
// account's place in it.
type Latest struct {
	Conversation domain.ConversationID
	MsgID        domain.MsgID
	Time         time.Time
	// ReadMsgID is the account's read cursor, 0 when it has read nothing.
	ReadMsgID domain.MsgID
	// Unread counts the messages after ReadMsgID the account did not send.
	Unread int64
}

// Index is the read side of the conversation index.
type Index interface {
	// List returns a page of the conversations of account — its direct
	// ones and those of groups — newest first (ties by conversation id):
	// those q selects, at most q.Limit.
	List(ctx context.Context, account domain.AccountID, groups []domain.GroupID, q Query) (Page, error)
	Reads
}

// Query selects a page of an account's conversation list.
type Query struct {
	// Since keeps the conversations whose latest message is newer.
	Since time.Time
	// After, unless its Time is zero, keeps those that come after it in
	// the list's order: older, or as old with a greater id. It is the
	// last entry of the page before.
	After Position
	// Limit is the most entries of the page.
	Limit int
}

// Position is a place in a conversation list: a latest message's time
// and its conversation.
type Position struct {
	Time         time.Time
	Conversation domain.ConversationID
}

// Page is a page of a conversation list.
type Page struct {
	Entries []Latest
	// More is set when the list goes on after the page.
	More bool
	// Considered is how many conversations with a message the list
	// looked at (the account's direct ones and its groups'), and
	// EmptyGroups how many of its groups had none, whatever the page
	// holds: what the list cost. An empty group costs a tenth of a
	// conversation or less (a filter in memory, or an index probe), and
	// anyone may add an account to groups, so the two are apart.
	Considered  int
	EmptyGroups int
}

// participants are the accounts whose index lists a direct conversation.
func participants(c domain.ConversationID) []domain.AccountID {
	if c.Kind() != domain.KindDirect {
		return nil
	}
	a, b := c.Accounts()
	if a == b {
		return []domain.AccountID{a}
	}
	return []domain.AccountID{a, b}
}

// newestFirst orders a list and cuts it to q's page: newest first, ties
// by conversation id, the same order for every adapter.
func newestFirst(out []Latest, q Query, emptyGroups int) Page {
	page := Page{Considered: len(out), EmptyGroups: emptyGroups}
	kept := out[:0]
	for _, l := range out {
		if l.Time.After(q.Since) && (q.After.Time.IsZero() || before(q.After, l)) {
			kept = append(kept, l)
		}
	}
	sort.Slice(kept, func(i, j int) bool {
		if !kept[i].Time.Equal(kept[j].Time) {
			return kept[i].Time.After(kept[j].Time)
		}
		return kept[i].Conversation.String() < kept[j].Conversation.String()
	})
	if len(kept) > q.Limit {
		kept, page.More = kept[:q.Limit], true
	}
	page.Entries = kept
	return page
}

// before reports whether p comes before l in a list's order.
func before(p Position, l Latest) bool {
	if !l.Time.Equal(p.Time) {
		return l.Time.Before(p.Time)
	}
	return l.Conversation.String() > p.Conversation.String()
}
