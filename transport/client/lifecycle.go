package client

import (
	"context"

	"github.com/parley-chat/parley/transport/wire"
)

// Edit replaces the body of one of your messages and returns the ack. It
// retries like Send, with the same clientMsgID, so an edit is made once.
func (c *Client) Edit(ctx context.Context, conversation string, msgID int64, clientMsgID, body string) (wire.ServerFrame, error) {
	return c.send(ctx, wire.Request{Type: wire.TypeEdit, Conversation: conversation, MsgID: msgID, ClientMsgID: clientMsgID, Body: body})
}

// Delete deletes one of your messages for everyone and returns the ack.
// Deleting it again is answered with a duplicate ack, so retries are safe.
func (c *Client) Delete(ctx context.Context, conversation string, msgID int64) (wire.ServerFrame, error) {
	return c.send(ctx, wire.Request{Type: wire.TypeDelete, Conversation: conversation, MsgID: msgID})
}

// applyChange applies a pushed edit or deletion to a message the inbox
// holds; one it does not hold arrives in its latest form by sync.
func (t *thread) applyChange(f wire.ServerFrame) {
	for i := range t.msgs {
		m := &t.msgs[i]
		if m.MsgID != f.MsgID || m.Deleted {
			continue
		}
		if f.Type == wire.TypeDeleted {
			m.Body, m.EditedAt, m.Deleted = "", 0, true
		} else {
			m.Body, m.EditedAt = f.Body, f.EditedAt
		}
		return
	}
}
