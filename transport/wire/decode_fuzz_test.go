package wire_test

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/transport/wire"
)

var requestTypes = map[string]bool{
	wire.TypeHello: true, wire.TypeRenew: true, wire.TypePing: true, wire.TypeSend: true, wire.TypeSync: true,
	wire.TypeConversations: true, wire.TypeGroupCreate: true, wire.TypeGroupAdd: true, wire.TypeGroupRemove: true,
	wire.TypeGroups: true,
}

var knownCodes = map[wire.Code]bool{
	wire.CodeBadFrame: true, wire.CodeUnknownType: true, wire.CodeInvalidArgument: true,
}

// FuzzDecodeRequest checks I6 at the frame level: whatever a client sends,
// DecodeRequest neither panics nor lets through an envelope without an id
// and a known type, and every refusal carries a code.
func FuzzDecodeRequest(f *testing.F) {
	seeds := []string{
		// Valid frames.
		`{"id":"1","type":"ping"}`,
		`{"id":"h","type":"hello","token":"a.b.c"}`,
		`{"id":"s","type":"send","to":"bob","clientMsgId":"c1","kind":"text","body":"hi"}`,
		`{"id":"s","type":"send","group":"g1","clientMsgId":"c1","body":"\u00e9\ud83d\ude00"}`,
		`{"id":"y","type":"sync","conversation":"d:a:b","lastTime":1,"lastMsgId":2,"limit":3}`,
		`{"id":"c","type":"conversations","since":1700000000000}`,
		`{"id":"c","type":"conversations","before":1700000000000,"beforeConversation":"d:alice:bob","limit":2}`,
		`{"id":"g","type":"group_create","name":"n","accounts":["a","b"]}`,
		`{"id":"g","type":"group_add","group":"g1","accounts":["c"]}`,
		`{"id":"g","type":"group_remove","group":"g1","accounts":["c"]}`,
		`{"id":"g","type":"groups"}`,
		` {"id":"r","type":"renew"} `,
		// Hostile frames.
		``,
		`{}`,
		`[]`,
		`null`,
		`{"id":`,
		`{"id":"7"`,
		`{"id":"7`,
		`{"type":"send","body":"x","id":"7",`,
		`{"type":pi,"id":"7"}`,
		`{"x":{"id":"7"},`,
		`{"id":{"id":"7"},`,
		`{"id":"` + strings.Repeat("x", 65) + `",`,
		`{"id":"1","type":"ping"`,
		`{"id":"1","type":"ping"}{}`,
		`{"id":1,"type":"ping"}`,
		`{"id":"1","type":7}`,
		`{"id":"1","type":"nope"}`,
		`{"id":"1","limit":"x","type":"sync"}`,
		`{"id":"1","to":5,"type":"ping","limit":"x"}`,
		`{"id":"1","type":"sync","body":5,"LIMIT":"x"}`,
		`{"id":"` + strings.Repeat("x", 65) + `","type":"ping"}`,
		`{"id":"` + strings.Repeat("x", 65) + `","type":"sync","limit":"x"}`,
		`{"ID":"1","TYPE":"ping"}`,
		`{"id":"1","id":"","type":"ping"}`,
		`{"id":"\ud800","type":"ping"}`,
		"{\"id\":\"\xff\",\"type\":\"ping\"}",
		`{"id":"1","type":"ping","accounts":[[[[[[[[[[]]]]]]]]]]}`,
		`{"id":"1","type":"send","body":"` + strings.Repeat(`\"`, 100) + `"}`,
		`{"id":"1","type":"sync","lastMsgId":1e400}`,
		`{"id":"1","type":"sync","limit":-9223372036854775809}`,
		`{"id":"1","type":"sync","lastMsgId":5,"changes":true}`,
		`{"id":"1","type":"sync","changes":"true"}`,
		`{"id":"1","type":"sync","changes":1}`,
		"\x00",
		"\xef\xbb\xbf{\"id\":\"1\",\"type\":\"ping\"}", // BOM
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, derr := wire.DecodeRequest(frame)
		if derr != nil {
			if derr.Code == "" {
				t.Fatalf("DecodeRequest(%q): DecodeError without a code: %+v", frame, derr)
			}
			if !knownCodes[derr.Code] {
				t.Fatalf("DecodeRequest(%q): unexpected code %q", frame, derr.Code)
			}
			if len(derr.ID) > wire.MaxRequestIDLen {
				t.Fatalf("DecodeRequest(%q): echoes an id of %d bytes", frame, len(derr.ID))
			}
			if r.ID != "" || r.Type != "" {
				t.Fatalf("DecodeRequest(%q): returned request %+v with an error", frame, r)
			}
			return
		}
		if r.ID == "" || len(r.ID) > wire.MaxRequestIDLen {
			t.Fatalf("DecodeRequest(%q): accepted id %q", frame, r.ID)
		}
		if !requestTypes[r.Type] {
			t.Fatalf("DecodeRequest(%q): accepted unknown type %q", frame, r.Type)
		}
	})
}
