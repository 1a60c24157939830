package wire_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/wire"
)

func TestFromMessage(t *testing.T) {
	id := uuid.MustParse("0b0a7a4e-6d0b-4f5e-9a55-5b3f3bfc5a11")
	m := domain.Message{
		ID: id, MsgID: 1<<48 | 9, ClientMsgID: "c1", Sender: domain.Sender{Account: "bob", Device: "web"},
		Conversation: domain.DirectConversation("bob", "alice"), Kind: "text", Body: "hi", ServerTime: time.UnixMilli(1700000000123),
	}
	want := wire.Message{
		MsgID: 1<<48 | 9, MessageID: id.String(), ClientMsgID: "c1", Conversation: "d:alice:bob",
		From: "bob", Device: "web", Kind: "text", Body: "hi", ServerTime: 1700000000123,
	}
	if got := wire.FromMessage(m); got != want {
		t.Errorf("FromMessage = %+v, want %+v", got, want)
	}
	if got := wire.FromMessages([]domain.Message{m, m}); !reflect.DeepEqual(got, []wire.Message{want, want}) {
		t.Errorf("FromMessages = %+v", got)
	}
	if got := wire.FromMessages(nil); got == nil || len(got) != 0 {
		t.Errorf("FromMessages(nil) = %#v, want an empty, non-nil slice (encodes as [])", got)
	}
	// The wire names are the protocol: pin them.
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	const golden = `{"msgId":281474976710665,"messageId":"0b0a7a4e-6d0b-4f5e-9a55-5b3f3bfc5a11","clientMsgId":"c1","conversation":"d:alice:bob","from":"bob","device":"web","kind":"text","body":"hi","serverTime":1700000000123}`
	if string(b) != golden {
		t.Errorf("JSON = %s\nwant %s", b, golden)
	}
}

func TestFromGroup(t *testing.T) {
	g, err := domain.NewGroup("g1", "friends", "carol", []domain.AccountID{"bob", "alice"})
	if err != nil {
		t.Fatal(err)
	}
	want := wire.GroupInfo{Group: "g1", Name: "friends", Owner: "carol", Members: []string{"alice", "bob", "carol"}}
	if got := wire.FromGroup(g); !reflect.DeepEqual(got, want) {
		t.Errorf("FromGroup = %+v, want %+v", got, want)
	}
}
