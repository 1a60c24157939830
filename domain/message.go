package domain

import (
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on a message. They are deliberately explicit: a client can check
// them before sending, and the server answers anything over them with a code.
const (
	// MaxBodyBytes is the largest message body, in bytes of UTF-8.
	MaxBodyBytes = 16 << 10
	// MaxKindLen is the longest message kind.
	MaxKindLen = 32
)

// MsgID is a message's position in its conversation. It strictly increases
// within a conversation and may have gaps; the event log assigns it.
type MsgID int64

// Sender is the account and device that sent a message.
type Sender struct {
	Account AccountID
	Device  DeviceID
}

// DefaultKind is a message's kind when its sender names none.
const DefaultKind = "text"

// Draft is a message a client asked to send, before the log accepted it.
type Draft struct {
	ClientMsgID  string
	Sender       Sender
	Conversation ConversationID
	Kind         string
	Body         string
}

// NewDraft validates a send request. The conversation must already be
// resolved (a direct peer or a group); authorization is separate.
func NewDraft(sender Sender, conv ConversationID, clientMsgID, kind, body string) (Draft, error) {
	if _, err := ParseAccountID(string(sender.Account)); err != nil {
		return Draft{}, err
	}
	if _, err := ParseDeviceID(string(sender.Device)); err != nil {
		return Draft{}, err
	}
	if conv.IsZero() {
		return Draft{}, &InvalidError{Field: "to", Reason: "names no account or group"}
	}
	if err := checkID("clientMsgId", clientMsgID); err != nil {
		return Draft{}, err
	}
	if kind == "" {
		kind = DefaultKind
	}
	if err := checkKind(kind); err != nil {
		return Draft{}, err
	}
	if err := checkBody(body); err != nil {
		return Draft{}, err
	}
	return Draft{ClientMsgID: clientMsgID, Sender: sender, Conversation: conv, Kind: kind, Body: body}, nil
}

// checkBody checks a message body, sent or edited: within MaxBodyBytes,
// valid UTF-8.
func checkBody(body string) error {
	if len(body) > MaxBodyBytes {
		return &LimitError{Field: "body bytes", Limit: MaxBodyBytes, Got: len(body)}
	}
	if !utf8.ValidString(body) {
		return &InvalidError{Field: "body", Reason: "is not valid UTF-8"}
	}
	return nil
}

func checkKind(kind string) error {
	if len(kind) > MaxKindLen {
		return &InvalidError{Field: "kind", Reason: "is longer than 32 bytes"}
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '/') {
			return &InvalidError{Field: "kind", Reason: "has a character outside [a-z0-9._/-]"}
		}
	}
	return nil
}

// Message is an accepted message: a Draft with the server's identity, time
// and its position in the conversation.
type Message struct {
	ID           uuid.UUID
	MsgID        MsgID
	ClientMsgID  string
	Sender       Sender
	Conversation ConversationID
	Kind         string
	Body         string
	ServerTime   time.Time
	// EditedAt is when the sender last edited the message; zero if never.
	// Body is then the latest body.
	EditedAt time.Time
	// Deleted marks a tombstone: the message was deleted for everyone.
	// Body is empty; the ids, sender, kind and time remain so that cursors
	// and gap detection stay exact.
	Deleted bool
	// Revision is the log position (as a msgid of the same partition) of
	// the last edit applied; a change at or below it is applied already,
	// so that applying part of the log again changes nothing (I4).
	Revision MsgID
}
