package wire_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/wire"
)

// page is a page of n messages whose bodies are cut from body, some edited,
// some deleted.
func page(n int, body string) []domain.Message {
	out := make([]domain.Message, n)
	for i := range out {
		b := body
		if len(b) > 0 {
			b = b[:(i*7)%(len(b)+1)]
		}
		out[i] = domain.Message{ID: uuid.New(), MsgID: domain.MsgID(1<<48 + i), ClientMsgID: "c-" + strings.Repeat("x", i%5),
			Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: domain.DirectConversation("alice", "bob"),
			Kind: "text", Body: b, ServerTime: time.UnixMilli(1795714619000 + int64(i))}
		switch i % 5 {
		case 3:
			out[i].EditedAt = time.UnixMilli(1795714619500 + int64(i))
		case 4:
			out[i].Deleted, out[i].Body = true, ""
		}
	}
	return out
}

// sameReplies checks that a sync reply made of the messages' encodings is
// byte for byte the one encoding the messages gives, cut to the same budget.
func sameReplies(t *testing.T, msgs []domain.Message, budget int, more bool, changes []domain.Message) {
	t.Helper()
	encs := make([][]byte, len(msgs))
	for i := range msgs {
		encs[i] = wire.EncodeMessage(&msgs[i])
	}
	next := wire.Cursor{LastTime: 1795714620000, LastMsgID: 9}
	var ch []wire.Message
	chMore := false
	if len(changes) > 0 {
		ch, chMore, budget = wire.CutChanges(wire.FromMessages(changes), budget, false)
	}
	ws, wantMore, wantNext := wire.CutPage(wire.FromMessages(msgs), budget, more, next.LastMsgID)
	want := wire.AppendMessages(nil, "7", "d:alice:bob", ws, "cache", wantMore, 0, wire.Cursor{LastTime: next.LastTime, LastMsgID: wantNext}, ch, chMore)
	es, gotMore, gotNext := wire.CutEncodedPage(encs, func(i int) int64 { return int64(msgs[i].MsgID) }, budget, more, next.LastMsgID)
	got := wire.AppendEncodedMessages(nil, "7", "d:alice:bob", es, "cache", gotMore, 0, wire.Cursor{LastTime: next.LastTime, LastMsgID: gotNext}, ch, chMore)
	if !bytes.Equal(got, want) {
		t.Fatalf("reply from encodings differs:\n got %s\nwant %s", got, want)
	}
}

func TestEncodedRepliesMatchEncodedMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int
		body    string
		budget  int
		more    bool
		changes int
	}{
		{name: "empty page", n: 0, body: "hi", budget: 1 << 20},
		{name: "one message", n: 1, body: "hi bob", budget: 1 << 20},
		{name: "fifty, more after", n: 50, body: "the quick brown fox jumps over the lazy dog", budget: 1 << 20, more: true},
		{name: "escapes and unicode", n: 50, body: "<b>\"q\" & \\ \x00\x1f \xff héllo 中文 🎉 \u2028\u2029\n\t", budget: 1 << 20},
		{name: "cut by the budget", n: 50, body: strings.Repeat("y", 400), budget: 4 << 10},
		{name: "one message over the budget", n: 3, body: strings.Repeat("z", 9000), budget: 64},
		{name: "with changes", n: 20, body: "edited <ok>", budget: 8 << 10, changes: 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sameReplies(t, page(tc.n, tc.body), tc.budget, tc.more, page(tc.changes, tc.body))
		})
	}
}

// FuzzEncodedReply: whatever the messages' fields and the budget, a reply
// made of EncodeMessage's encodings is the reply AppendMessages makes.
func FuzzEncodedReply(f *testing.F) {
	f.Add("hello", "c-1", "alice", "phone", "text", 50, 1<<20, int64(0), false, true)
	f.Add("<\xff\u2028\"\\", "", "Zed", "d", "", 3, 100, int64(1795714619000), true, false)
	f.Fuzz(func(t *testing.T, body, clientMsgID, from, device, kind string, n, budget int, edited int64, deleted, more bool) {
		n = max(0, min(n, 200))
		msgs := make([]domain.Message, n)
		for i := range msgs {
			msgs[i] = domain.Message{ID: uuid.New(), MsgID: domain.MsgID(i + 1), ClientMsgID: clientMsgID,
				Sender: domain.Sender{Account: domain.AccountID(from), Device: domain.DeviceID(device)}, Conversation: domain.GroupConversation("g1"),
				Kind: kind, Body: body[:i%(len(body)+1)], ServerTime: time.UnixMilli(int64(i) * 1000), Deleted: deleted && i%2 == 0}
			if edited != 0 && i%3 == 0 {
				msgs[i].EditedAt = time.UnixMilli(edited)
			}
		}
		sameReplies(t, msgs, budget, more, nil)
	})
}
