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
//
// The id holds its text form, made once where the id is: String, the form
// every key, event and frame is written with, costs nothing, and the
// accounts and the group are slices of it.
type ConversationID struct {
	s    string
	cut  int32 // direct: the index of the ':' before b
	kind ConversationKind
}

// DirectConversation is the one conversation between x and y, whichever sends.
// x and y may be the same account (notes to self).
func DirectConversation(x, y AccountID) ConversationID {
	if y < x {
		x, y = y, x
	}
	return ConversationID{s: "d:" + string(x) + ":" + string(y), cut: int32(2 + len(x)), kind: KindDirect}
}

// GroupConversation is the conversation of group g.
func GroupConversation(g GroupID) ConversationID {
	return ConversationID{s: "g:" + string(g), kind: KindGroup}
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
		// s is the text form already: keep it rather than make it again.
		return ConversationID{s: s, cut: int32(2 + len(x)), kind: KindDirect}, nil
	case "g":
		if _, err := ParseGroupID(rest); err != nil {
			return ConversationID{}, err
		}
		return ConversationID{s: s, kind: KindGroup}, nil
	}
	return ConversationID{}, &InvalidError{Field: "conversation", Reason: "kind is neither d nor g"}
}

// Kind is KindDirect or KindGroup; zero for the zero ConversationID.
func (c ConversationID) Kind() ConversationKind { return c.kind }

// IsZero reports whether c names no conversation.
func (c ConversationID) IsZero() bool { return c.kind == 0 }

// Group is the group of a group conversation, "" otherwise.
func (c ConversationID) Group() GroupID {
	if c.kind != KindGroup {
		return ""
	}
	return GroupID(c.s[2:])
}

// Accounts are the two accounts of a direct conversation, in order; both
// "" otherwise.
func (c ConversationID) Accounts() (AccountID, AccountID) {
	if c.kind != KindDirect {
		return "", ""
	}
	return AccountID(c.s[2:c.cut]), AccountID(c.s[c.cut+1:])
}

// Peer is the other account of a direct conversation from me's side.
func (c ConversationID) Peer(me AccountID) AccountID {
	a, b := c.Accounts()
	if a == me {
		return b
	}
	return a
}

// HasParticipant reports whether a is one of a direct conversation's accounts.
// Group membership lives in the group, not the id.
func (c ConversationID) HasParticipant(a AccountID) bool {
	x, y := c.Accounts()
	return c.kind == KindDirect && (x == a || y == a)
}

// String is the text form; "" for the zero ConversationID.
func (c ConversationID) String() string { return c.s }
