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
	// List returns the conversations of account — its direct ones and
	// those of groups — whose latest message is newer than since, newest
	// first (ties by conversation id), at most limit.
	List(ctx context.Context, account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) ([]Latest, error)
	Reads
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

// newestFirst orders a list and cuts it to limit: newest first, ties by
// conversation id, the same order for every adapter.
func newestFirst(out []Latest, since time.Time, limit int) []Latest {
	kept := out[:0]
	for _, l := range out {
		if l.Time.After(since) {
			kept = append(kept, l)
		}
	}
	sort.Slice(kept, func(i, j int) bool {
		if !kept[i].Time.Equal(kept[j].Time) {
			return kept[i].Time.After(kept[j].Time)
		}
		return kept[i].Conversation.String() < kept[j].Conversation.String()
	})
	if len(kept) > limit {
		kept = kept[:limit]
	}
	return kept
}
