package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeMessageSentFast holds the fast reader to encoding/json:
// whatever payload it accepts, encoding/json accepts too and reads as the
// same event.
func FuzzDecodeMessageSentFast(f *testing.F) {
	for _, e := range []MessageSent{
		{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1", Conversation: "d:alice:bob",
			SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi é😀", ServerTime: 1795714619000},
		{MessageID: "m", ClientMsgID: "c", Conversation: "g:g1", SenderAccount: "a", SenderDevice: "d", Kind: "text",
			ServerTime: -1, BodyKey: "k1", SealedBody: []byte{0, 1, 2, 250, 251, 252, 253}},
		{Body: "a <b> & \"c\"\n"},
		{},
	} {
		p, err := Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add([]byte(`{"messageId":"m","clientMsgId":"c","conversation":"x","senderAccount":"a","senderDevice":"d","kind":"k","serverTime":01}`))
	f.Add([]byte(`{"messageId":"m","clientMsgId":"c","conversation":"x","senderAccount":"a","senderDevice":"d","kind":"k","serverTime":1,"sealedBody":"!!"}`))
	f.Add([]byte(`{"messageId":"m","clientMsgId":"c","conversation":"x","senderAccount":"a","senderDevice":"d","kind":"k","serverTime":1,"sealedBody":""}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		fast, ok := decodeMessageSentFast(p)
		if !ok {
			return
		}
		var slow MessageSent
		if err := json.Unmarshal(p, &slow); err != nil {
			t.Fatalf("the fast reader took %q, which encoding/json refuses: %v", p, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", p, fast, slow)
		}
	})
}

// What Encode writes takes the fast path, sealed or not; a body with an
// escape goes through encoding/json and decodes all the same.
func TestDecodeMessageSentFastTakesEncodedEvents(t *testing.T) {
	for _, e := range []MessageSent{
		{MessageID: "m", ClientMsgID: "c", Conversation: "d:a:b", SenderAccount: "a", SenderDevice: "d", Kind: "text", Body: "plain", ServerTime: 5},
		{MessageID: "m", ClientMsgID: "c", Conversation: "d:a:b", SenderAccount: "a", SenderDevice: "d", Kind: "text", ServerTime: 5, BodyKey: "k", SealedBody: []byte("sealed")},
	} {
		p, _ := Encode(e)
		if got, ok := decodeMessageSentFast(p); !ok || !reflect.DeepEqual(got, e) {
			t.Errorf("%s: fast path %v, %+v", p, ok, got)
		}
	}
	e := MessageSent{MessageID: "m", Body: strings.Repeat("line\n", 3)}
	p, _ := Encode(e)
	if _, ok := decodeMessageSentFast(p); ok {
		t.Errorf("%s: an escaped body took the fast path", p)
	}
	got, err := Decode(MessageSentV1, p)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Errorf("%s: decoded %+v, %v", p, got, err)
	}
}
