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
