package events

import "testing"

func BenchmarkMessageSentCodec(b *testing.B) {
	e := MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-0001", Conversation: "d:alice:bob",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hello there, how are you doing today?", ServerTime: 1795714619000}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, err := Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(MessageSentV1, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSealed encodes the record a send appends: a sealed body.
func BenchmarkEncodeSealed(b *testing.B) {
	e := MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-0001", Conversation: "d:alice:bob",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", ServerTime: 1795714619000,
		BodyKey: "alice/0190f3c2", SealedBody: make([]byte, 128)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}
