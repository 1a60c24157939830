package wire_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/parley-chat/parley/transport/wire"
)

func TestDecodeRequest(t *testing.T) {
	longID := strings.Repeat("i", wire.MaxRequestIDLen+1)
	maxID := strings.Repeat("i", wire.MaxRequestIDLen)
	tests := []struct {
		name     string
		frame    string
		want     wire.Request // when wantCode is ""
		wantCode wire.Code
		wantID   string // the id echoed in the DecodeError
	}{
		// Accepted envelopes.
		{name: "ping", frame: `{"id":"1","type":"ping"}`, want: wire.Request{ID: "1", Type: wire.TypePing}},
		{name: "surrounding whitespace", frame: " \r\n\t{\"id\":\"1\",\"type\":\"ping\"}\n ", want: wire.Request{ID: "1", Type: wire.TypePing}},
		{name: "id at max length", frame: `{"id":"` + maxID + `","type":"renew"}`, want: wire.Request{ID: maxID, Type: wire.TypeRenew}},
		{name: "send with fields", frame: `{"id":"s1","type":"send","to":"bob","clientMsgId":"c1","kind":"text","body":"hi"}`,
			want: wire.Request{ID: "s1", Type: wire.TypeSend, To: "bob", ClientMsgID: "c1", Kind: "text", Body: "hi"}},
		{name: "sync with cursor", frame: `{"id":"y","type":"sync","conversation":"d:a:b","lastTime":5,"lastMsgId":281474976710661,"limit":50}`,
			want: wire.Request{ID: "y", Type: wire.TypeSync, Conversation: "d:a:b", LastTime: 5, LastMsgID: 281474976710661, Limit: 50}},
		{name: "sync with changes", frame: `{"id":"y","type":"sync","conversation":"d:a:b","lastMsgId":9,"changes":true}`,
			want: wire.Request{ID: "y", Type: wire.TypeSync, Conversation: "d:a:b", LastMsgID: 9, Changes: true}},
		{name: "sync with changes false", frame: `{"id":"y","type":"sync","conversation":"d:a:b","changes":false}`,
			want: wire.Request{ID: "y", Type: wire.TypeSync, Conversation: "d:a:b"}},
		{name: "group_create with accounts", frame: `{"id":"g","type":"group_create","name":"n","accounts":["a","b"]}`,
			want: wire.Request{ID: "g", Type: wire.TypeGroupCreate, Name: "n", Accounts: []string{"a", "b"}}},
		{name: "unknown fields are ignored", frame: `{"id":"1","type":"ping","future":{"x":[1,2]}}`, want: wire.Request{ID: "1", Type: wire.TypePing}},
		{name: "hello with token", frame: `{"id":"h","type":"hello","token":"abc.def.ghi"}`, want: wire.Request{ID: "h", Type: wire.TypeHello, Token: "abc.def.ghi"}},
		{name: "an escaped surrogate pair", frame: `{"id":"1","type":"send","body":"\ud83d\ude00"}`, want: wire.Request{ID: "1", Type: wire.TypeSend, Body: "\U0001F600"}},
		{name: "an escaped lone surrogate", frame: `{"id":"1","type":"send","body":"a\ud800b"}`, wantCode: wire.CodeBadFrame, wantID: "1"},
		{name: "an escaped low half first", frame: `{"id":"1","type":"send","body":"\ude00\ud83d"}`, wantCode: wire.CodeBadFrame, wantID: "1"},

		// Not an object.
		{name: "empty frame", frame: ``, wantCode: wire.CodeBadFrame},
		{name: "only whitespace", frame: " \n\t ", wantCode: wire.CodeBadFrame},
		{name: "array", frame: `[{"id":"1","type":"ping"}]`, wantCode: wire.CodeBadFrame},
		{name: "string", frame: `"ping"`, wantCode: wire.CodeBadFrame},
		{name: "number", frame: `42`, wantCode: wire.CodeBadFrame},
		{name: "null", frame: `null`, wantCode: wire.CodeBadFrame},
		{name: "plain text", frame: `hello`, wantCode: wire.CodeBadFrame},
		{name: "binary", frame: "\x00\x01\xff", wantCode: wire.CodeBadFrame},

		// Invalid JSON in an object: the id is salvaged as far as the frame
		// is readable, so the client can match the error to its request.
		{name: "truncated object salvages id", frame: `{"id":"7","type":"ping"`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "truncated right after the id", frame: `{"id":"7"`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "id after other fields", frame: `{"type":"send","body":"x","id":"7",`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "trailing garbage salvages id", frame: `{"id":"7","type":"ping"} x`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "two objects salvage the first id", frame: `{"id":"7","type":"ping"}{"id":"8","type":"ping"}`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "truncated inside the id", frame: `{"id":"7`, wantCode: wire.CodeBadFrame},
		{name: "id after a broken value is not reached", frame: `{"type":pi,"id":"7"}`, wantCode: wire.CodeBadFrame},
		{name: "nested id is not the request id", frame: `{"x":{"id":"7"},`, wantCode: wire.CodeBadFrame},
		{name: "over-long id in a broken frame is not echoed", frame: `{"id":"` + longID + `",`, wantCode: wire.CodeBadFrame},
		{name: "single quotes", frame: `{'id':'7'}`, wantCode: wire.CodeBadFrame},
		// Well-formed JSON with a mistyped field: the id is salvaged so the
		// client can match the error to its request.
		{name: "mistyped field salvages id", frame: `{"id":"req-9","type":"sync","limit":"ten"}`, wantCode: wire.CodeBadFrame, wantID: "req-9"},
		{name: "mistyped accounts salvages id", frame: `{"id":"req-10","type":"group_add","accounts":"bob"}`, wantCode: wire.CodeBadFrame, wantID: "req-10"},
		{name: "mistyped field with over-long id does not echo it", frame: `{"id":"` + longID + `","type":"sync","limit":"ten"}`, wantCode: wire.CodeBadFrame},
		{name: "changes as a string", frame: `{"id":"req-11","type":"sync","changes":"true"}`, wantCode: wire.CodeBadFrame, wantID: "req-11"},
		{name: "changes as a number", frame: `{"id":"req-12","type":"sync","changes":1}`, wantCode: wire.CodeBadFrame, wantID: "req-12"},
		{name: "changes null reads as absent", frame: `{"id":"req-13","type":"sync","changes":null}`, want: wire.Request{ID: "req-13", Type: wire.TypeSync}},
		{name: "numeric id", frame: `{"id":7,"type":"ping"}`, wantCode: wire.CodeBadFrame},
		{name: "type not a string", frame: `{"id":"7","type":1}`, wantCode: wire.CodeBadFrame, wantID: "7"},

		// Envelope fields.
		{name: "empty object", frame: `{}`, wantCode: wire.CodeInvalidArgument},
		{name: "missing id", frame: `{"type":"ping"}`, wantCode: wire.CodeInvalidArgument},
		{name: "empty id", frame: `{"id":"","type":"ping"}`, wantCode: wire.CodeInvalidArgument},
		{name: "null id", frame: `{"id":null,"type":"ping"}`, wantCode: wire.CodeInvalidArgument},
		{name: "id too long is not echoed", frame: `{"id":"` + longID + `","type":"ping"}`, wantCode: wire.CodeInvalidArgument},
		{name: "missing type", frame: `{"id":"5"}`, wantCode: wire.CodeInvalidArgument, wantID: "5"},
		{name: "empty type", frame: `{"id":"5","type":""}`, wantCode: wire.CodeInvalidArgument, wantID: "5"},
		{name: "unknown type", frame: `{"id":"6","type":"launch_missiles"}`, wantCode: wire.CodeUnknownType, wantID: "6"},
		{name: "server frame type from a client", frame: `{"id":"6","type":"welcome"}`, wantCode: wire.CodeUnknownType, wantID: "6"},
		{name: "push type from a client", frame: `{"id":"6","type":"message"}`, wantCode: wire.CodeUnknownType, wantID: "6"},
		{name: "type in wrong case", frame: `{"id":"6","type":"PING"}`, wantCode: wire.CodeUnknownType, wantID: "6"},
		{name: "huge unknown type", frame: `{"id":"6","type":"` + strings.Repeat("t", 10000) + `"}`, wantCode: wire.CodeUnknownType, wantID: "6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, derr := wire.DecodeRequest([]byte(tt.frame))
			if tt.wantCode == "" {
				if derr != nil {
					t.Fatalf("DecodeRequest(%q) = %v, want success", tt.frame, derr)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("DecodeRequest(%q) = %+v, want %+v", tt.frame, got, tt.want)
				}
				return
			}
			if derr == nil {
				t.Fatalf("DecodeRequest(%q) = %+v, want code %s", tt.frame, got, tt.wantCode)
			}
			if derr.Code != tt.wantCode {
				t.Errorf("Code = %q (%v), want %q", derr.Code, derr, tt.wantCode)
			}
			if derr.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", derr.ID, tt.wantID)
			}
			if derr.Reason == "" {
				t.Errorf("empty Reason")
			}
			if !strings.HasPrefix(derr.Error(), string(tt.wantCode)+": ") {
				t.Errorf("Error() = %q, want it to start with the code", derr.Error())
			}
			// The reason is bounded even for a huge hostile type.
			if len(derr.Reason) > 200 {
				t.Errorf("Reason is %d bytes long", len(derr.Reason))
			}
			if !reflect.DeepEqual(got, wire.Request{}) {
				t.Errorf("DecodeRequest returned %+v with an error", got)
			}
		})
	}
}

// Every request type the protocol defines is accepted.
func TestDecodeRequestKnowsEveryType(t *testing.T) {
	for _, typ := range []string{
		wire.TypeHello, wire.TypeRenew, wire.TypePing, wire.TypeSend, wire.TypeSync,
		wire.TypeConversations, wire.TypeGroupCreate, wire.TypeGroupAdd, wire.TypeGroupRemove, wire.TypeGroups,
	} {
		t.Run(typ, func(t *testing.T) {
			r, derr := wire.DecodeRequest([]byte(`{"id":"x","type":"` + typ + `"}`))
			if derr != nil {
				t.Fatalf("type %q refused: %v", typ, derr)
			}
			if r.Type != typ || r.ID != "x" {
				t.Errorf("got %+v", r)
			}
		})
	}
}
