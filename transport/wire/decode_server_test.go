package wire

import (
	"encoding/json"
	"testing"
)

// pushFrame and ackFrame are what the server writes most.
var (
	pushFrame = AppendPush(nil, &Message{MsgID: 1<<48 + 7, MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c-1",
		Conversation: "d:ann:bob", From: "ann", Device: "phone", Kind: "text", Body: `see you "later" & <3` + "\nok", ServerTime: 1_700_000_000_000}, 1<<48+6)
	ackFrame = AppendAck(nil, &ServerFrame{ID: "42", Type: TypeAck, MsgID: 1<<48 + 7, MessageID: "0190f3c2-8d7e-7000-8000-000000000000",
		Conversation: "d:ann:bob", ServerTime: 1_700_000_000_000})
	syncFrame = AppendMessages(nil, "s1", "d:ann:bob", []Message{
		{MsgID: 1<<48 + 5, MessageID: "m5", ClientMsgID: "c5", Conversation: "d:ann:bob", From: "bob", Device: "d", Kind: "text", Body: "hi\n", ServerTime: 1},
		{MsgID: 1<<48 + 7, MessageID: "m7", ClientMsgID: "c7", Conversation: "d:ann:bob", From: "ann", Device: "d", Kind: "text", Body: "", ServerTime: 2, EditedAt: 3, Deleted: true},
	}, "cache", true, 0, Cursor{LastTime: 2, LastMsgID: 1<<48 + 7}, []Message{{MsgID: 1<<48 + 1, Body: "edited", EditedAt: 4}}, false)
)

// FuzzDecodeServerFrame holds the fast path to encoding/json: whatever
// frame it takes, encoding/json reads as the same ServerFrame.
func FuzzDecodeServerFrame(f *testing.F) {
	for _, s := range []string{
		string(pushFrame),
		string(ackFrame),
		`{"type":"message","message":{"msgId":1,"body":"\u00e9\n","editedAt":5,"deleted":true}}`,
		`{"id":"1","type":"ack","msgId":2,"duplicate":true}`,
		`{"type":"message","message":null}`,
		`{"type":"message","message":{}}`,
		`{"type":"message","message":{"msgId":1,"msgId":2}}`,
		`{"type":"pong","id":"p"}`,
		`{"Type":"ack"}`,
		`{"type":"messages","messages":[]}`,
		`{"type":"message"} x`,
		`{"type":"message","prevMsgId":1.5}`,
		string(syncFrame),
		`{"type":"messages","id":"s","conversation":"d:a:b","messages":[],"source":"cache","hasMore":false,"next":{"lastTime":0,"lastMsgId":0}}`,
		`{"type":"messages","messages":[{"msgId":1},{"msgId":2,"deleted":true}],"changes":[{"msgId":1,"editedAt":3}],"changesMore":true,"goneThrough":9}`,
		`{"type":"messages","messages":[{"msgId":1},]}`,
		`{"type":"messages","next":null}`,
		`{"type":"messages","next":{"lastTime":1,"lastTime":2}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) { sameAsEncodingJSON(t, frame, decodeServerFast) })
}

// Pushes and acks as the server writes them take the fast path; other
// frames still decode.
func TestDecodeServerFrameTakesPushesAndAcks(t *testing.T) {
	for _, frame := range [][]byte{pushFrame, ackFrame, syncFrame} {
		var f ServerFrame
		if !decodeServerFast(frame, &f) {
			t.Errorf("%s: not taken by the fast path", frame)
		}
	}
	got, err := DecodeServerFrame([]byte(`{"type":"messages","id":"s","messages":[{"msgId":3,"body":"b"}],"hasMore":true}`))
	if err != nil || len(got.Messages) != 1 || got.Messages[0].MsgID != 3 || !got.HasMore {
		t.Errorf("a sync reply decoded as %+v, %v", got, err)
	}
	if _, err := DecodeServerFrame([]byte(`{"type":`)); err == nil {
		t.Error("a cut frame decoded")
	}
}

func BenchmarkDecodeServerFrame(b *testing.B) {
	for _, c := range []struct {
		name  string
		frame []byte
	}{{"push", pushFrame}, {"ack", ackFrame}, {"sync", syncFrame}} {
		b.Run(c.name+"/fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeServerFrame(c.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var f ServerFrame
				if err := json.Unmarshal(c.frame, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
