package domain

import "strings"

// ConversationKind tells a 1:1 conversation from a group.
type ConversationKind uint8

const (
	// KindDirect is a 1:1 conversation between two accounts, one for both directions.
	KindDirect ConversationKind = iota + 1
	// KindGroup is a conversation of a group's members.
	KindGroup
)

func (k ConversationKind) String() string {
	switch k {
	case KindDirect:
		return "direct"
	case KindGroup:
		return "group"
	}
	return "unknown"
}

// ConversationID names a conversation. Its text form is stable and is the
// event log's partition key: "d:<a>:<b>" for a 1:1 conversation with a < b,
// "g:<group>" for a group. The ':' never occurs inside an id.
type ConversationID struct {
	kind  ConversationKind
	a, b  AccountID // direct: a < b
	group GroupID
}

// DirectConversation is the one conversation between x and y, whichever sends.
// x and y may be the same account (notes to self).
func DirectConversation(x, y AccountID) ConversationID {
	if y < x {
		x, y = y, x
	}
	return ConversationID{kind: KindDirect, a: x, b: y}
}

// GroupConversation is the conversation of group g.
func GroupConversation(g GroupID) ConversationID {
	return ConversationID{kind: KindGroup, group: g}
}

// ParseConversationID reads the text form written by String.
func ParseConversationID(s string) (ConversationID, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return ConversationID{}, &InvalidError{Field: "conversation", Reason: "has no kind prefix (d: or g:)"}
	}
	switch kind {
	case "d":
		x, y, ok := strings.Cut(rest, ":")
		if !ok {
			return ConversationID{}, &InvalidError{Field: "conversation", Reason: "direct id needs two accounts"}
		}
		ax, err := ParseAccountID(x)
		if err != nil {
			return ConversationID{}, err
		}
		ay, err := ParseAccountID(y)
		if err != nil {
			return ConversationID{}, err
		}
		if ay < ax {
			return ConversationID{}, &InvalidError{Field: "conversation", Reason: "direct accounts are not in order"}
		}
		return DirectConversation(ax, ay), nil
	case "g":
		g, err := ParseGroupID(rest)
		if err != nil {
			return ConversationID{}, err
		}
		return GroupConversation(g), nil
	}
	return ConversationID{}, &InvalidError{Field: "conversation", Reason: "kind is neither d nor g"}
}

// Kind is KindDirect or KindGroup; zero for the zero ConversationID.
func (c ConversationID) Kind() ConversationKind { return c.kind }

// IsZero reports whether c names no conversation.
func (c ConversationID) IsZero() bool { return c.kind == 0 }

// Group is the group of a group conversation, "" otherwise.
func (c ConversationID) Group() GroupID { return c.group }

// Accounts are the two accounts of a direct conversation, in order.
func (c ConversationID) Accounts() (AccountID, AccountID) { return c.a, c.b }

// Peer is the other account of a direct conversation from me's side.
func (c ConversationID) Peer(me AccountID) AccountID {
	if c.a == me {
		return c.b
	}
	return c.a
}

// HasParticipant reports whether a is one of a direct conversation's accounts.
// Group membership lives in the group, not the id.
func (c ConversationID) HasParticipant(a AccountID) bool {
	return c.kind == KindDirect && (c.a == a || c.b == a)
}

func (c ConversationID) String() string {
	switch c.kind {
	case KindDirect:
		return "d:" + string(c.a) + ":" + string(c.b)
	case KindGroup:
		return "g:" + string(c.group)
	}
	return ""
}
