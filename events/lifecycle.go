package events

import (
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Versioned names of the message lifecycle events.
const (
	MessageEditedV1  = "MessageEdited.v1"
	MessageDeletedV1 = "MessageDeleted.v1"
)

// MessageEdited v1: the sender replaced the body of one of its messages.
// It is keyed by the conversation, so it follows the message in the log.
type MessageEdited struct {
	// Conversation and MsgID name the message edited.
	Conversation string `json:"conversation"`
	MsgID        int64  `json:"msgId"`
	// Account and Device made the edit (the message's sender account).
	Account string `json:"account"`
	Device  string `json:"device"`
	// ClientMsgID is the edit's idempotency key.
	ClientMsgID string `json:"clientMsgId"`
	// Body is the new body; empty on the log once sealed (see
	// MessageSent's Body).
	Body string `json:"body,omitempty"`
	// EditedAt is when the server accepted the edit, Unix milliseconds.
	EditedAt int64 `json:"editedAt"`
	// BodyKey, SealedBody and Erased are MessageSent's.
	BodyKey    string `json:"bodyKey,omitempty"`
	SealedBody []byte `json:"sealedBody,omitempty"`
	Erased     bool   `json:"-"`
	// Via is "http" for an edit made through the HTTP API (its device
	// gets the push too); absent for one made over a connection.
	Via string `json:"via,omitempty"`
}

// EventName implements Event.
func (MessageEdited) EventName() string { return MessageEditedV1 }

// Key implements Event.
func (e MessageEdited) Key() string { return e.Conversation }

// MessageDeleted v1: the sender deleted one of its messages for everyone.
type MessageDeleted struct {
	Conversation string `json:"conversation"`
	MsgID        int64  `json:"msgId"`
	Account      string `json:"account"`
	Device       string `json:"device"`
	// DeletedAt is when the server accepted the deletion, Unix milliseconds.
	DeletedAt int64 `json:"deletedAt"`
	// Via is MessageEdited's.
	Via string `json:"via,omitempty"`
}

// ViaHTTP is the Via of a change or read made through the HTTP API.
const ViaHTTP = "http"

// via is the Via of a change or read whose device gets its push too.
func via(pushToOrigin bool) string {
	if pushToOrigin {
		return ViaHTTP
	}
	return ""
}

// EventName implements Event.
func (MessageDeleted) EventName() string { return MessageDeletedV1 }

// Key implements Event.
func (e MessageDeleted) Key() string { return e.Conversation }

// NewAmendmentEvent maps an accepted change to its event.
func NewAmendmentEvent(a domain.Amendment, at time.Time) Event {
	if a.Delete {
		return MessageDeleted{Conversation: a.Conversation.String(), MsgID: int64(a.MsgID),
			Account: string(a.By.Account), Device: string(a.By.Device), DeletedAt: at.UnixMilli(), Via: via(a.PushToOrigin)}
	}
	return MessageEdited{Conversation: a.Conversation.String(), MsgID: int64(a.MsgID),
		Account: string(a.By.Account), Device: string(a.By.Device), ClientMsgID: a.ClientMsgID,
		Body: a.Body, EditedAt: at.UnixMilli(), Via: via(a.PushToOrigin)}
}

// Amendment maps an edit back to the domain change, validating what came
// off the log; revision is the record's own position as a msgid. An edit
// whose body is erased becomes a deletion: the body it would set is gone,
// and the one it replaced was the same account's.
func (e MessageEdited) Amendment(revision domain.MsgID) (domain.Amendment, error) {
	conv, err := domain.ParseConversationID(e.Conversation)
	if err != nil {
		return domain.Amendment{}, err
	}
	if e.Erased {
		return MessageDeleted{Conversation: e.Conversation, MsgID: e.MsgID, Account: e.Account, Device: e.Device,
			DeletedAt: e.EditedAt, Via: e.Via}.Amendment(revision)
	}
	if e.BodyKey != "" && e.SealedBody != nil {
		return domain.Amendment{}, fmt.Errorf("cannot read the edit of message %d: its body is sealed; open it first", e.MsgID)
	}
	a, err := domain.NewEdit(domain.Sender{Account: domain.AccountID(e.Account), Device: domain.DeviceID(e.Device)},
		conv, domain.MsgID(e.MsgID), e.ClientMsgID, e.Body)
	if err != nil {
		return domain.Amendment{}, err
	}
	a.At, a.Revision, a.PushToOrigin = time.UnixMilli(e.EditedAt), revision, e.Via == ViaHTTP
	return a, nil
}

// Amendment maps a deletion back to the domain change.
func (e MessageDeleted) Amendment(revision domain.MsgID) (domain.Amendment, error) {
	conv, err := domain.ParseConversationID(e.Conversation)
	if err != nil {
		return domain.Amendment{}, err
	}
	a, err := domain.NewDelete(domain.Sender{Account: domain.AccountID(e.Account), Device: domain.DeviceID(e.Device)},
		conv, domain.MsgID(e.MsgID))
	if err != nil {
		return domain.Amendment{}, err
	}
	a.At, a.Revision, a.PushToOrigin = time.UnixMilli(e.DeletedAt), revision, e.Via == ViaHTTP
	return a, nil
}
