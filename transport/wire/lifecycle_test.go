package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Edited and deleted messages, and the pushes of changes, encode as
// encoding/json encodes the same frames; EncodedLen stays exact.
func TestLifecycleEncodingsMatchEncodingJSON(t *testing.T) {
	edited := sampleMessage("new <body>")
	edited.EditedAt = 1795714619500
	tomb := sampleMessage("")
	tomb.Deleted = true
	for name, m := range map[string]Message{"edited": edited, "tombstone": tomb} {
		t.Run(name, func(t *testing.T) {
			checkSame(t, AppendPush(nil, &m, 0), ServerFrame{Type: TypePush, Message: &m})
			if got, want := EncodedLen(&m), len(AppendMessage(nil, &m)); got != want {
				t.Errorf("EncodedLen = %d, the encoding has %d bytes", got, want)
			}
		})
	}
	conv := domain.DirectConversation("alice", "bob")
	at := time.UnixMilli(1795714619500)
	for _, body := range []string{"", "hi", "quote \" \u2028 <&>", strings.Repeat("x", 16<<10)} {
		a := domain.Amendment{Conversation: conv, MsgID: 1<<48 + 3, Body: body, At: at}
		want := ServerFrame{Type: TypeEdited, Conversation: conv.String(), MsgID: 1<<48 + 3, Body: body, EditedAt: at.UnixMilli()}
		sameFrame(t, AppendChange(nil, &a), want)
	}
	del := domain.Amendment{Conversation: conv, MsgID: 1<<48 + 3, Delete: true, Body: "ignored", At: at}
	sameFrame(t, AppendChange(nil, &del), ServerFrame{Type: TypeDeleted, Conversation: conv.String(), MsgID: 1<<48 + 3, DeletedAt: at.UnixMilli()})
}

func sameFrame(t *testing.T, got []byte, want ServerFrame) {
	t.Helper()
	var a ServerFrame
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("not JSON: %v: %q", err, got)
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("decoded %+v\nwant %+v", a, want)
	}
}

func TestLifecycleRequestsAreKnown(t *testing.T) {
	for _, typ := range []string{TypeEdit, TypeDelete} {
		r, err := DecodeRequest([]byte(`{"id":"1","type":"` + typ + `","conversation":"d:a:b","msgId":281474976710657,"body":"x","clientMsgId":"e1"}`))
		if err != nil || r.MsgID != 281474976710657 || r.Conversation != "d:a:b" {
			t.Errorf("%s: %+v, %v", typ, r, err)
		}
	}
}

// An ack encodes as encoding/json encodes the same frame, byte for byte.
func TestAppendAckMatchesEncodingJSON(t *testing.T) {
	conv := domain.DirectConversation("alice", "bob")
	at := time.UnixMilli(1795714619500)
	for _, f := range []ServerFrame{
		FromAck("42", 1<<48+7, "0190f3c2-8d7e-7000-8000-000000000000", conv, at, false),
		FromAck("", 1<<48+7, "0190f3c2-8d7e-7000-8000-000000000000", conv, at, true),
		FromAck("q\"<&>\u2028", 3, "m", domain.ConversationID{}, time.Time{}, true),
		FromAck("7", 0, "", conv, at, false),
	} {
		std, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendAck(nil, &f); string(got) != string(std) {
			t.Errorf("AppendAck = %s\nencoding/json gives %s", got, std)
		}
	}
}

// FuzzAppendAck: for any id, message id and conversation text, the ack
// encodes as encoding/json encodes it.
func FuzzAppendAck(f *testing.F) {
	f.Add("42", "0190f3c2-8d7e-7000-8000-000000000000", int64(1<<48+7), int64(1795714619500), false)
	f.Add("", "\xff<", int64(0), int64(-1), true)
	f.Fuzz(func(t *testing.T, id, messageID string, msgID, serverTime int64, duplicate bool) {
		fr := ServerFrame{ID: id, Type: TypeAck, MsgID: msgID, MessageID: messageID, Conversation: "d:alice:bob", ServerTime: serverTime, Duplicate: duplicate}
		std, err := json.Marshal(fr)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendAck(nil, &fr); string(got) != string(std) {
			t.Fatalf("AppendAck = %s\nencoding/json gives %s", got, std)
		}
	})
}
