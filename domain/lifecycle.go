package domain

import (
	"fmt"
	"time"
)

// DefaultEditWindow is how long after sending the sender may edit a
// message, unless configured otherwise.
const DefaultEditWindow = 48 * time.Hour

// Amendment is a change to an accepted message: an edit of its body or its
// deletion for everyone. It is applied in log order to every read model
// that holds the message.
type Amendment struct {
	Conversation ConversationID
	// MsgID names the message changed.
	MsgID MsgID
	// By is the account and device that made the change.
	By Sender
	// Delete says the message is deleted for everyone; otherwise Body
	// replaces its body.
	Delete bool
	Body   string
	// ClientMsgID is the edit's idempotency key (an edit only).
	ClientMsgID string
	// At is when the server accepted the change.
	At time.Time
	// Revision is the change's own log position, as a msgid of the
	// conversation's partition: it orders the changes of a message.
	Revision MsgID
	// PushToOrigin says the device that made the change gets its push
	// too: the change came through the HTTP API, so no connection of that
	// device got the answer.
	PushToOrigin bool
}

// Apply returns m with a applied: an edit replaces the body of a message
// that is not deleted; a deletion leaves a tombstone without body. A change
// at or below m's revision, or to a tombstone, is applied already (or
// moot) and changes nothing — but for a deletion of a tombstone at
// revision 0 (one whose body came off the log erased: see Erasure.Apply),
// which gives it the deletion's revision, as the deletion did where the
// body was readable. ok is false when nothing changed.
func (a Amendment) Apply(m Message) (out Message, ok bool) {
	if m.Deleted && !(a.Delete && m.Revision == 0) || (a.Revision != 0 && a.Revision <= m.Revision) {
		return m, false
	}
	if a.Delete {
		m.Deleted, m.Body, m.EditedAt = true, "", time.Time{}
	} else {
		m.Body, m.EditedAt = a.Body, a.At
	}
	m.Revision = a.Revision
	return m, true
}

// NewEdit validates an edit request: the new body is within the limits
// of a message's. Who may edit is CheckEdit's question.
func NewEdit(by Sender, conv ConversationID, id MsgID, clientMsgID, body string) (Amendment, error) {
	if err := checkChange(by, conv, id); err != nil {
		return Amendment{}, err
	}
	if err := checkID("clientMsgId", clientMsgID); err != nil {
		return Amendment{}, err
	}
	if err := checkBody(body); err != nil {
		return Amendment{}, err
	}
	return Amendment{Conversation: conv, MsgID: id, By: by, Body: body, ClientMsgID: clientMsgID}, nil
}

// NewDelete validates a delete-for-everyone request.
func NewDelete(by Sender, conv ConversationID, id MsgID) (Amendment, error) {
	if err := checkChange(by, conv, id); err != nil {
		return Amendment{}, err
	}
	return Amendment{Conversation: conv, MsgID: id, By: by, Delete: true}, nil
}

func checkChange(by Sender, conv ConversationID, id MsgID) error {
	if _, err := ParseAccountID(string(by.Account)); err != nil {
		return err
	}
	if _, err := ParseDeviceID(string(by.Device)); err != nil {
		return err
	}
	if conv.IsZero() {
		return &InvalidError{Field: "conversation", Reason: "is missing"}
	}
	if id <= 0 {
		return &InvalidError{Field: "msgId", Reason: "must be a positive msgid"}
	}
	return nil
}

// Check tells whether a may be made to m (the message it names, as the
// history holds it) at now: only the sender's account changes a message
// (groups have no admins yet, so neither owner nor members may delete
// another's message); a tombstone is gone for edits; an edit must come
// within window of the message's server time. A deletion has no window.
func (a Amendment) Check(m Message, now time.Time, window time.Duration) error {
	if m.Sender.Account != a.By.Account {
		return fmt.Errorf("message %d was sent by another account: %w", m.MsgID, ErrForbidden)
	}
	if a.Delete {
		return nil
	}
	if m.Deleted {
		return fmt.Errorf("message %d was deleted: %w", m.MsgID, ErrNotFound)
	}
	if now.Sub(m.ServerTime) > window {
		return fmt.Errorf("message %d was sent more than %v ago: %w", m.MsgID, window, ErrTooLate)
	}
	return nil
}

// Erasure is an account's erasure: every body the account sent at or
// before At is gone, from every read model, for good.
type Erasure struct {
	Account AccountID
	At      time.Time
	// Revision is the erasure record's log position, as a msgid of the
	// partition whose conversations it sweeps: a tombstone it leaves is a
	// change like a deletion, that sync reports to a device that missed it.
	Revision MsgID
}

// Apply returns m as a tombstone if e covers it: sent by e's account at or
// before e.At, and not deleted by a change already. ok is false when
// nothing changed. The tombstone is a deletion's (body empty, deleted):
// ids, sender, kind and time remain so that cursors stay exact.
//
// A tombstone at revision 0 is one whose body came off the log erased (a
// replay after the erasure, or a read model that lagged it): nothing has
// changed it yet, so e does, at its revision, as it would have changed the
// message had its body been readable — so that a sync with changes
// reports it alike whenever the read model was built.
func (e Erasure) Apply(m Message) (out Message, ok bool) {
	if m.Deleted && m.Revision != 0 || m.Sender.Account != e.Account || m.ServerTime.After(e.At) {
		return m, false
	}
	m.Deleted, m.Body, m.EditedAt = true, "", time.Time{}
	if e.Revision > m.Revision {
		m.Revision = e.Revision
	}
	return m, true
}
