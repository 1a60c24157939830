// Package events defines Parley's event log: the event types with their
// explicit, versioned names, the JSON codec, topics, partitioning and the
// mapping from a record's position to a msgid. docs/events.md documents the
// schema field by field for consumers outside Parley.
package events

import (
	"time"

	"encoding/json"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
)

// MetadataName is the Watermill metadata key (a Kafka record header) that
// carries an event's versioned name. Consumers dispatch on it, never on the
// payload's shape.
const MetadataName = "event"

// Versioned event names. A change that is not backward compatible gets a new
// version and both are published side by side until consumers move.
const (
	MessageSentV1         = "MessageSent.v1"
	GroupCreatedV1        = "GroupCreated.v1"
	GroupMembersAddedV1   = "GroupMembersAdded.v1"
	GroupMembersRemovedV1 = "GroupMembersRemoved.v1"
)

// Names lists every event name this version knows, on either topic: the
// names Decode understands. Tools that filter by name (parley tap --types)
// check against it, so that a misspelt or unversioned name is refused
// instead of matching nothing.
func Names() []string {
	return []string{MessageSentV1, GroupCreatedV1, GroupMembersAddedV1, GroupMembersRemovedV1, UserLoggedOutV1,
		ConversationReadV1, MessageEditedV1, MessageDeletedV1, AccountErasedV1}
}

// Event is anything that goes on the conversation topic.
type Event interface {
	// EventName is the versioned name, for example "MessageSent.v1".
	EventName() string
	// Key is the conversation the event belongs to: the partition key, so
	// that one conversation's events are totally ordered.
	Key() string
}

// ErrUnknownEvent: a record's name is not one this version understands.
// Consumers skip such records so that a newer producer does not stop them.
var ErrUnknownEvent = errors.New("unknown event")

// MessageSent v1: a message was accepted. Its msgid is the record's position
// (see MsgID); it is not in the payload because the log assigns it.
type MessageSent struct {
	// MessageID is the server's UUID for the message.
	MessageID string `json:"messageId"`
	// ClientMsgID is the sender's idempotency key.
	ClientMsgID string `json:"clientMsgId"`
	// Conversation is the conversation id, "d:<a>:<b>" or "g:<group>".
	Conversation string `json:"conversation"`
	// SenderAccount and SenderDevice name who sent it.
	SenderAccount string `json:"senderAccount"`
	SenderDevice  string `json:"senderDevice"`
	// Kind is the application's message kind ("text" by default).
	Kind string `json:"kind"`
	// Body is the message content. Empty on the log once sealed: the
	// content is then in SealedBody, and Open puts it back here.
	Body string `json:"body,omitempty"`
	// ServerTime is when the gateway accepted it, Unix milliseconds.
	ServerTime int64 `json:"serverTime"`
	// BodyKey names the sender's data key that sealed the body (see
	// Seal); empty for a body in plaintext (records written before bodies
	// were sealed).
	BodyKey string `json:"bodyKey,omitempty"`
	// SealedBody is the body sealed with AES-256-GCM: nonce, ciphertext
	// and tag (base64 in JSON).
	SealedBody []byte `json:"sealedBody,omitempty"`
	// Erased is set by Open when BodyKey is destroyed: the body is gone
	// for good and the message reads as a tombstone. Never on the log.
	Erased bool `json:"-"`
}

// EventName implements Event.
func (MessageSent) EventName() string { return MessageSentV1 }

// Key implements Event.
func (e MessageSent) Key() string { return e.Conversation }

// GroupCreated v1: a group exists with an owner and its first members.
type GroupCreated struct {
	Group   string   `json:"group"`
	Name    string   `json:"name"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
	At      int64    `json:"at"`
}

// EventName implements Event.
func (GroupCreated) EventName() string { return GroupCreatedV1 }

// Key implements Event.
func (e GroupCreated) Key() string { return "g:" + e.Group }

// GroupMembersAdded v1: accounts joined a group.
type GroupMembersAdded struct {
	Group    string   `json:"group"`
	By       string   `json:"by"`
	Accounts []string `json:"accounts"`
	At       int64    `json:"at"`
}

// EventName implements Event.
func (GroupMembersAdded) EventName() string { return GroupMembersAddedV1 }

// Key implements Event.
func (e GroupMembersAdded) Key() string { return "g:" + e.Group }

// GroupMembersRemoved v1: accounts left or were removed from a group.
type GroupMembersRemoved struct {
	Group    string   `json:"group"`
	By       string   `json:"by"`
	Accounts []string `json:"accounts"`
	At       int64    `json:"at"`
}

// EventName implements Event.
func (GroupMembersRemoved) EventName() string { return GroupMembersRemovedV1 }

// Key implements Event.
func (e GroupMembersRemoved) Key() string { return "g:" + e.Group }

// Encode returns an event's payload.
func Encode(e Event) ([]byte, error) {
	if m, ok := e.(MessageSent); ok {
		if b, ok := encodeMessageSentFast(m); ok {
			return b, nil
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("cannot encode %s: %w", e.EventName(), err)
	}
	return b, nil
}

// Decode reads a payload by its versioned name. An unknown name returns
// ErrUnknownEvent.
func Decode(name string, payload []byte) (Event, error) {
	switch name {
	case MessageSentV1:
		if e, ok := decodeMessageSentFast(payload); ok {
			return e, nil
		}
		return decodeAs[MessageSent](name, payload)
	case GroupCreatedV1:
		return decodeAs[GroupCreated](name, payload)
	case GroupMembersAddedV1:
		return decodeAs[GroupMembersAdded](name, payload)
	case GroupMembersRemovedV1:
		return decodeAs[GroupMembersRemoved](name, payload)
	case UserLoggedOutV1:
		return decodeAs[UserLoggedOut](name, payload)
	case ConversationReadV1:
		return decodeAs[ConversationRead](name, payload)
	case MessageEditedV1:
		return decodeAs[MessageEdited](name, payload)
	case MessageDeletedV1:
		return decodeAs[MessageDeleted](name, payload)
	case AccountErasedV1:
		return decodeAs[AccountErased](name, payload)
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownEvent, name)
}

func decodeAs[T Event](name string, payload []byte) (Event, error) {
	var v T
	if err := json.Unmarshal(payload, &v); err != nil {
		return nil, fmt.Errorf("cannot decode %s: %w", name, err)
	}
	return v, nil
}

// NewMessageSent maps an accepted draft to its event.
func NewMessageSent(id string, d domain.Draft, serverTime time.Time) MessageSent {
	return MessageSent{
		MessageID:     id,
		ClientMsgID:   d.ClientMsgID,
		Conversation:  d.Conversation.String(),
		SenderAccount: string(d.Sender.Account),
		SenderDevice:  string(d.Sender.Device),
		Kind:          d.Kind,
		Body:          d.Body,
		ServerTime:    serverTime.UnixMilli(),
	}
}

// Message maps the event at msgid back to a domain message, validating what
// came off the log: a record that fails is reported, not applied.
func (e MessageSent) Message(msgid domain.MsgID) (domain.Message, error) {
	conv, err := domain.ParseConversationID(e.Conversation)
	if err != nil {
		return domain.Message{}, err
	}
	id, err := uuid.Parse(e.MessageID)
	if err != nil {
		return domain.Message{}, &domain.InvalidError{Field: "messageId", Reason: err.Error()}
	}
	if e.BodyKey != "" && !e.Erased && e.SealedBody != nil {
		return domain.Message{}, fmt.Errorf("cannot read message %s: its body is sealed; open it first", e.MessageID)
	}
	sender := domain.Sender{Account: domain.AccountID(e.SenderAccount), Device: domain.DeviceID(e.SenderDevice)}
	d, err := domain.NewDraft(sender, conv, e.ClientMsgID, e.Kind, e.Body)
	if err != nil {
		return domain.Message{}, err
	}
	// An erased body reads like a deletion for everyone: a tombstone that
	// keeps the ids, sender, kind and time, so cursors stay exact.
	return domain.Message{
		ID: id, MsgID: msgid, ClientMsgID: d.ClientMsgID, Sender: d.Sender, Conversation: conv,
		Kind: d.Kind, Body: d.Body, ServerTime: time.UnixMilli(e.ServerTime), Deleted: e.Erased,
	}, nil
}

// Accounts parses a list of account ids from an event.
func Accounts(in []string) ([]domain.AccountID, error) {
	out := make([]domain.AccountID, len(in))
	for i, s := range in {
		a, err := domain.ParseAccountID(s)
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}
