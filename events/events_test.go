package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

func sampleEvents() []struct {
	name    string
	event   events.Event
	wantKey string
} {
	return []struct {
		name    string
		event   events.Event
		wantKey string
	}{
		{events.MessageSentV1, events.MessageSent{
			MessageID: "0b0a7a4e-6d0b-4f5e-9a55-5b3f3bfc5a11", ClientMsgID: "c1", Conversation: "d:alice:bob",
			SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "héllo \"there\"\n<>&", ServerTime: 1700000000123,
		}, "d:alice:bob"},
		{events.GroupCreatedV1, events.GroupCreated{Group: "g1", Name: "friends", Owner: "alice", Members: []string{"alice", "bob"}, At: 42}, "g:g1"},
		{events.GroupMembersAddedV1, events.GroupMembersAdded{Group: "g1", By: "alice", Accounts: []string{"carol"}, At: 43}, "g:g1"},
		{events.GroupMembersRemovedV1, events.GroupMembersRemoved{Group: "g1", By: "bob", Accounts: []string{"bob"}, At: 44}, "g:g1"},
		{events.ConversationReadV1, events.ConversationRead{Conversation: "g:g1", Account: "bob", Device: "tablet", MsgID: 281474976710700, At: 46}, "g:g1"},
		{events.MessageEditedV1, events.MessageEdited{Conversation: "d:alice:bob", MsgID: 1<<48 + 1, Account: "alice", Device: "phone",
			ClientMsgID: "e1", Body: "edited \"there\"", EditedAt: 1700000000200}, "d:alice:bob"},
		{events.MessageDeletedV1, events.MessageDeleted{Conversation: "g:g1", MsgID: 1<<48 + 2, Account: "bob", Device: "web",
			DeletedAt: 1700000000300}, "g:g1"},
		{events.AccountErasedV1, events.AccountErased{Account: "alice", Keys: []string{"66f6c77af18091b495e75edb9f5058ad"},
			ErasedAt: 1700000000400, Partitions: 16}, "a:alice"},
		{events.MessageSentV1, events.MessageSent{MessageID: "0190f3c2-8d7e-7000-8000-000000000000", ClientMsgID: "c2",
			Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text", ServerTime: 1700000000500,
			BodyKey: "66f6c77af18091b495e75edb9f5058ad", SealedBody: []byte("nonce-ciphertext-and-tag")}, "d:alice:bob"},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, tt := range sampleEvents() {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.event.EventName(); got != tt.name {
				t.Errorf("EventName() = %q, want %q", got, tt.name)
			}
			if got := tt.event.Key(); got != tt.wantKey {
				t.Errorf("Key() = %q, want %q", got, tt.wantKey)
			}
			b, err := events.Encode(tt.event)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := events.Decode(tt.event.EventName(), b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.event) {
				t.Errorf("Decode(Encode(e)) = %#v, want %#v", got, tt.event)
			}
		})
	}
}

// Names is exactly the set of events this version encodes and decodes,
// so that a tool filtering by name accepts every real one.
func TestNames(t *testing.T) {
	all := []events.Event{events.UserLoggedOut{Account: "alice", At: 45}}
	for _, tt := range sampleEvents() {
		all = append(all, tt.event)
	}
	var want []string
	for _, e := range all {
		b, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Decode(e.EventName(), b); err != nil {
			t.Errorf("Decode(%s): %v", e.EventName(), err)
		}
		if !slices.Contains(want, e.EventName()) { // a sealed and a plaintext MessageSent
			want = append(want, e.EventName())
		}
	}
	got := events.Names()
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

// The payload field names are a published schema (R12): consumers outside
// Parley read them, so renaming a field must break this test.
func TestEncodeFieldNames(t *testing.T) {
	tests := []struct {
		name  string
		event events.Event
		want  []string
	}{
		// A body is in plaintext in records written before bodies were
		// sealed, sealed (bodyKey, sealedBody) since; never both.
		{"MessageSent", events.MessageSent{Body: "hi"}, []string{"body", "clientMsgId", "conversation", "kind", "messageId", "senderAccount", "senderDevice", "serverTime"}},
		{"MessageSent sealed", events.MessageSent{BodyKey: "k", SealedBody: []byte{1}}, []string{"bodyKey", "clientMsgId", "conversation", "kind", "messageId", "sealedBody", "senderAccount", "senderDevice", "serverTime"}},
		{"GroupCreated", events.GroupCreated{}, []string{"at", "group", "members", "name", "owner"}},
		{"GroupMembersAdded", events.GroupMembersAdded{}, []string{"accounts", "at", "by", "group"}},
		{"GroupMembersRemoved", events.GroupMembersRemoved{}, []string{"accounts", "at", "by", "group"}},
		{"ConversationRead", events.ConversationRead{}, []string{"account", "at", "conversation", "device", "msgId"}},
		{"MessageEdited", events.MessageEdited{Body: "hi"}, []string{"account", "body", "clientMsgId", "conversation", "device", "editedAt", "msgId"}},
		{"MessageEdited sealed", events.MessageEdited{BodyKey: "k", SealedBody: []byte{1}}, []string{"account", "bodyKey", "clientMsgId", "conversation", "device", "editedAt", "msgId", "sealedBody"}},
		{"AccountErased", events.AccountErased{}, []string{"account", "erasedAt", "keys", "partitions"}},
		{"MessageDeleted", events.MessageDeleted{}, []string{"account", "conversation", "deletedAt", "device", "msgId"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := events.Encode(tt.event)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			var got []string
			for k := range m {
				got = append(got, k)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name        string
		eventName   string
		payload     string
		wantUnknown bool
	}{
		{"empty name", "", `{}`, true},
		{"unversioned name", "MessageSent", `{}`, true},
		{"future version", "MessageSent.v2", `{}`, true},
		{"wrong case", "messagesent.v1", `{}`, true},
		{"Go type path", "events.MessageSent", `{}`, true},
		{"unknown name with garbage payload", "Nope.v1", `not json`, true},
		{"known name, invalid JSON", events.MessageSentV1, `{"messageId":`, false},
		{"known name, wrong field type", events.MessageSentV1, `{"serverTime":"soon"}`, false},
		{"group created, members not a list", events.GroupCreatedV1, `{"members":"alice"}`, false},
		{"members added, not an object", events.GroupMembersAddedV1, `[1,2]`, false},
		{"members removed, empty payload", events.GroupMembersRemovedV1, ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := events.Decode(tt.eventName, []byte(tt.payload))
			if err == nil {
				t.Fatalf("Decode(%q, %q) = %#v, want an error", tt.eventName, tt.payload, e)
			}
			if e != nil {
				t.Errorf("Decode returned event %#v with error", e)
			}
			if got := errors.Is(err, events.ErrUnknownEvent); got != tt.wantUnknown {
				t.Errorf("errors.Is(%v, ErrUnknownEvent) = %v, want %v", err, got, tt.wantUnknown)
			}
			if tt.wantUnknown && !strings.Contains(err.Error(), tt.eventName) && tt.eventName != "" {
				t.Errorf("error %q does not name the event %q", err, tt.eventName)
			}
		})
	}
}

// A newer producer may add fields; an older consumer ignores them.
func TestDecodeIgnoresUnknownFields(t *testing.T) {
	e, err := events.Decode(events.GroupMembersAddedV1, []byte(`{"group":"g1","by":"a","accounts":["b"],"at":1,"reason":"new in v1.1"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := events.GroupMembersAdded{Group: "g1", By: "a", Accounts: []string{"b"}, At: 1}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("Decode = %#v, want %#v", e, want)
	}
}

func TestNewMessageSentAndBack(t *testing.T) {
	d, err := domain.NewDraft(domain.Sender{Account: "bob", Device: "web"}, domain.DirectConversation("bob", "alice"), "c-9", "", "hello")
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	at := time.UnixMilli(1700000000456)
	e := events.NewMessageSent(id.String(), d, at)
	want := events.MessageSent{
		MessageID: id.String(), ClientMsgID: "c-9", Conversation: "d:alice:bob", SenderAccount: "bob", SenderDevice: "web",
		Kind: "text", Body: "hello", ServerTime: 1700000000456,
	}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("NewMessageSent = %+v, want %+v", e, want)
	}
	m, err := e.Message(77)
	if err != nil {
		t.Fatalf("Message: %v", err)
	}
	wantMsg := domain.Message{
		ID: id, MsgID: 77, ClientMsgID: "c-9", Sender: d.Sender, Conversation: d.Conversation,
		Kind: "text", Body: "hello", ServerTime: at,
	}
	if !reflect.DeepEqual(m, wantMsg) || !m.ServerTime.Equal(at) {
		t.Errorf("Message = %+v, want %+v", m, wantMsg)
	}
}

func TestMessageSentMessageRejectsBadRecords(t *testing.T) {
	good := events.MessageSent{
		MessageID: uuid.NewString(), ClientMsgID: "c1", Conversation: "g:team",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: 1,
	}
	if _, err := good.Message(1); err != nil {
		t.Fatalf("the good record fails: %v", err)
	}
	tests := []struct {
		name      string
		mutate    func(*events.MessageSent)
		wantField string // InvalidError field; "" means ErrTooLarge
	}{
		{"empty conversation", func(e *events.MessageSent) { e.Conversation = "" }, "conversation"},
		{"conversation without kind", func(e *events.MessageSent) { e.Conversation = "alice" }, "conversation"},
		{"direct conversation out of order", func(e *events.MessageSent) { e.Conversation = "d:bob:alice" }, "conversation"},
		{"conversation with a bad group", func(e *events.MessageSent) { e.Conversation = "g:a b" }, "group"},
		{"empty message id", func(e *events.MessageSent) { e.MessageID = "" }, "messageId"},
		{"message id not a uuid", func(e *events.MessageSent) { e.MessageID = "not-a-uuid" }, "messageId"},
		{"empty sender account", func(e *events.MessageSent) { e.SenderAccount = "" }, "account"},
		{"sender account with separator", func(e *events.MessageSent) { e.SenderAccount = "alice/phone" }, "account"},
		{"empty sender device", func(e *events.MessageSent) { e.SenderDevice = "" }, "device"},
		{"empty client msg id", func(e *events.MessageSent) { e.ClientMsgID = "" }, "clientMsgId"},
		{"bad kind", func(e *events.MessageSent) { e.Kind = "TEXT" }, "kind"},
		{"invalid UTF-8 body", func(e *events.MessageSent) { e.Body = "\xc3\x28" }, "body"},
		{"body over the limit", func(e *events.MessageSent) { e.Body = strings.Repeat("x", domain.MaxBodyBytes+1) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good
			tt.mutate(&e)
			m, err := e.Message(1)
			if err == nil {
				t.Fatalf("Message = %+v, want an error", m)
			}
			if !reflect.DeepEqual(m, domain.Message{}) {
				t.Errorf("Message returned %+v with an error", m)
			}
			if tt.wantField == "" {
				if !errors.Is(err, domain.ErrTooLarge) {
					t.Errorf("err = %v, want ErrTooLarge", err)
				}
				return
			}
			var inv *domain.InvalidError
			if !errors.As(err, &inv) || inv.Field != tt.wantField {
				t.Errorf("err = %v, want *InvalidError on %q", err, tt.wantField)
			}
		})
	}
}

func TestAccounts(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []domain.AccountID
		wantErr bool
	}{
		{"nil", nil, []domain.AccountID{}, false},
		{"valid", []string{"alice", "bob"}, []domain.AccountID{"alice", "bob"}, false},
		{"one bad", []string{"alice", "b:ob"}, nil, true},
		{"empty string", []string{""}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.Accounts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Accounts(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Accounts(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if tt.wantErr && got != nil {
				t.Errorf("Accounts(%q) returned %v with an error", tt.in, got)
			}
		})
	}
}
