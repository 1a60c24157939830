package client

import (
	"context"
	"sort"

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

// replace puts a message's latest form, from a sync's changes or a
// re-read, in place of the one held; one not held is not added (the inbox
// holds a conversation's messages up to its cursor, without holes).
func (t *thread) replace(m wire.Message) {
	i := sort.Search(len(t.msgs), func(i int) bool { return t.msgs[i].MsgID >= m.MsgID })
	if i < len(t.msgs) && t.msgs[i].MsgID == m.MsgID {
		t.msgs[i] = m
	}
}
