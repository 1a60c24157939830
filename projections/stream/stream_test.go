package stream

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Each event the console lists says who did what, and names the message
// it concerns, never its body.
func TestApplySummaries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		event   events.Event
		msgID   int64
		summary string
	}{
		{"sent", events.MessageSent{Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "web", Kind: "text", Body: "secret"}, 42, "alice/web sent text"},
		{"edited", events.MessageEdited{Conversation: "d:alice:bob", MsgID: 40, Account: "alice", Device: "web", Body: "secret"}, 40, "alice/web edited a message"},
		{"deleted", events.MessageDeleted{Conversation: "d:alice:bob", MsgID: 40, Account: "alice", Device: "web"}, 40, "alice/web deleted a message"},
		{"read", events.ConversationRead{Conversation: "d:alice:bob", Account: "bob", Device: "phone", MsgID: 41}, 41, "bob/phone read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecent(4)
			if err := r.Apply(context.Background(), projections.Record{Event: tc.event, MsgID: 42, Timestamp: time.UnixMilli(1)}); err != nil {
				t.Fatal(err)
			}
			got, _, stop := r.Watch()
			defer stop()
			if len(got) != 1 || got[0].Summary != tc.summary || got[0].MsgID != tc.msgID || got[0].Key != "d:alice:bob" {
				t.Errorf("got %+v, want summary %q, msgid %d, key d:alice:bob", got, tc.summary, tc.msgID)
			}
		})
	}
}
