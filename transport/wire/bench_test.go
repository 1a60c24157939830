package wire

import (
	"encoding/json"
	"testing"
)

var sendFrame = []byte(`{"id":"42","type":"send","to":"bob","clientMsgId":"c-0001","kind":"text","body":"hello there, how are you doing today?"}`)

// chatFrame is a send as encoders write chat text: quotes, an ampersand
// and a line break escaped.
var chatFrame = []byte(`{"id":"43","type":"send","to":"bob","clientMsgId":"c-0002","kind":"text","body":"see you \"later\" \u0026 bring the R\u0026D notes\nok? caf\u00e9 at 3pm \u003c3 thanks so much!"}`)

func BenchmarkDecodeRequest(b *testing.B) {
	for _, c := range []struct {
		name  string
		frame []byte
	}{{"plain", sendFrame}, {"escaped", chatFrame}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.frame)))
			for b.Loop() {
				if _, err := DecodeRequest(c.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodePush compares encoding/json with the hand encoder the
// server uses for pushes. The append case starts from a nil buffer, as
// transport/ws and transport/cluster do: a push frame is shared by its
// recipients' write queues, so it cannot reuse a buffer.
func BenchmarkEncodePush(b *testing.B) {
	m := Message{MsgID: 1<<48 + 12345, MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-0001",
		Conversation: "d:alice:bob", From: "alice", Device: "phone", Kind: "text", Body: "hello there, how are you doing today?", ServerTime: 1795714619000}
	const prev = 1<<48 + 12340
	b.Run("encoding/json", func(b *testing.B) {
		f := ServerFrame{Type: TypePush, PrevMsgID: prev, Message: &m}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := json.Marshal(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if frame := AppendPush(nil, &m, prev); len(frame) == 0 {
				b.Fatal("empty frame")
			}
		}
	})
}

// BenchmarkEncodeAck compares encoding/json with AppendAck, what every
// send is answered with.
func BenchmarkEncodeAck(b *testing.B) {
	f := ServerFrame{ID: "42", Type: TypeAck, MsgID: 1<<48 + 12345, MessageID: "0190f3c2-8d7e-7000-8000-000000000000",
		Conversation: "d:alice:bob", ServerTime: 1795714619000}
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if frame := AppendAck(nil, &f); len(frame) == 0 {
				b.Fatal("empty")
			}
		}
	})
}
