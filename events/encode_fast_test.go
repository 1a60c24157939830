package events

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The fast encoder writes what encoding/json writes, byte for byte, or
// declines.
func FuzzEncodeMessageSentFast(f *testing.F) {
	f.Add("0190f3c2-8d7e-7000-8000-000000000000", "c-1", "d:alice:bob", "alice", "phone", "text", "", int64(1795714619000), "k1", []byte{0, 1, 2, 250})
	f.Add("m", "c", "g:g1", "a", "d", "text", "hi <b> & \"c\"\n é😀\u2028", int64(-1), "", []byte(nil))
	f.Add("", "", "", "", "", "", "", int64(0), "", []byte{})
	f.Fuzz(func(t *testing.T, id, cid, conv, acct, dev, kind, body string, at int64, bodyKey string, sealed []byte) {
		e := MessageSent{MessageID: id, ClientMsgID: cid, Conversation: conv, SenderAccount: acct, SenderDevice: dev,
			Kind: kind, Body: body, ServerTime: at, BodyKey: bodyKey, SealedBody: sealed}
		fast, ok := encodeMessageSentFast(e)
		if !ok {
			return
		}
		slow, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("fast %s\nencoding/json %s", fast, slow)
		}
	})
}

// A record as a send appends it — ids of the id charset, a sealed body —
// takes the fast path, and one that needs escaping does not.
func TestEncodeMessageSentFastTakesTheRecordsOfSends(t *testing.T) {
	sealed := MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1.x@y_z", Conversation: "d:alice:bob",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", ServerTime: 1795714619000, BodyKey: "alice/1", SealedBody: []byte("\x00\xffsecret")}
	if _, ok := encodeMessageSentFast(sealed); !ok {
		t.Error("a sealed record of a send did not take the fast path")
	}
	if _, ok := encodeMessageSentFast(MessageSent{Body: "a <b>"}); ok {
		t.Error("a body that encoding/json escapes took the fast path")
	}
	for _, e := range []MessageSent{sealed, {Body: "a <b> & \"c\"\n"}} {
		got, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(e)
		if !bytes.Equal(got, want) {
			t.Errorf("Encode = %s, want %s", got, want)
		}
	}
}
