package wire_test

import (
	"reflect"
	"slices"
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
		// A field that belongs to another type is ignored whatever its JSON
		// type; one of the request's own type is still checked.
		{name: "mistyped field of another type", frame: `{"id":"2","type":"ping","to":5}`, want: wire.Request{ID: "2", Type: wire.TypePing}},
		{name: "mistyped field of another type before the type", frame: `{"id":"2","to":5,"type":"ping","limit":"x"}`, want: wire.Request{ID: "2", Type: wire.TypePing}},
		{name: "mistyped fields of other types keep the own ones", frame: `{"id":"4","type":"sync","body":5,"conversation":"d:a:b","accounts":"x","lastMsgId":9}`,
			want: wire.Request{ID: "4", Type: wire.TypeSync, Conversation: "d:a:b", LastMsgID: 9}},
		{name: "own field in another case next to a foreign one", frame: `{"id":"4","type":"sync","Conversation":"d:a:b","since":"x"}`,
			want: wire.Request{ID: "4", Type: wire.TypeSync, Conversation: "d:a:b"}},
		{name: "own mistyped field behind a foreign one", frame: `{"id":"7","type":"sync","body":5,"limit":"x"}`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "own mistyped field in another case", frame: `{"id":"7","type":"sync","body":5,"LIMIT":"x"}`, wantCode: wire.CodeBadFrame, wantID: "7"},
		{name: "mistyped field of an unknown type", frame: `{"id":"7","type":"nope","to":5}`, wantCode: wire.CodeBadFrame, wantID: "7"},
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

// ownFields are the fields of each request type, as docs/protocol.md
// lists them.
var ownFields = map[string][]string{
	wire.TypeHello:         {"token"},
	wire.TypeRenew:         {"token"},
	wire.TypePing:          nil,
	wire.TypeSend:          {"to", "group", "clientMsgId", "kind", "body", "retry"},
	wire.TypeSync:          {"conversation", "lastTime", "lastMsgId", "limit", "changes"},
	wire.TypeConversations: {"since", "limit", "before", "beforeConversation"},
	wire.TypeGroupCreate:   {"name", "accounts"},
	wire.TypeGroupAdd:      {"group", "accounts"},
	wire.TypeGroupRemove:   {"group", "accounts"},
	wire.TypeGroups:        {"after"},
	wire.TypeRead:          {"conversation", "msgId"},
	wire.TypeReaders:       {"conversation", "msgId"},
	wire.TypeTyping:        {"conversation"},
	wire.TypePresence:      {"accounts"},
	wire.TypeEdit:          {"conversation", "msgId", "clientMsgId", "body"},
	wire.TypeDelete:        {"conversation", "msgId"},
	wire.TypeMute:          {"conversation", "until"},
	wire.TypeUnmute:        {"conversation"},
}

// "The server ignores unknown fields and fields that don't belong to the
// type" (docs/protocol.md, "Frames"): a request may carry any field of
// another type with a value of any JSON type, while a value of the wrong
// JSON type in one of its own fields is bad_frame.
func TestDecodeRequestIgnoresFieldsOfOtherTypes(t *testing.T) {
	var all []string
	for _, fs := range ownFields {
		all = append(all, fs...)
	}
	for typ, fs := range ownFields {
		for _, f := range all {
			frame := `{"id":"x","type":"` + typ + `","` + f + `":{"wrong":[1]}}`
			r, derr := wire.DecodeRequest([]byte(frame))
			switch {
			case slices.Contains(fs, f) && (derr == nil || derr.Code != wire.CodeBadFrame || derr.ID != "x"):
				t.Errorf("%s: got %+v %v, want bad_frame for the request's own field", frame, r, derr)
			case !slices.Contains(fs, f) && (derr != nil || !reflect.DeepEqual(r, wire.Request{ID: "x", Type: typ})):
				t.Errorf("%s: got %+v %v, want the field ignored", frame, r, derr)
			}
		}
	}
}

// Every request type the protocol defines is accepted.
func TestDecodeRequestKnowsEveryType(t *testing.T) {
	for typ := range ownFields {
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
