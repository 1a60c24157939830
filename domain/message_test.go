package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestNewDraft(t *testing.T) {
	alice := domain.Sender{Account: "alice", Device: "phone"}
	conv := domain.DirectConversation("alice", "bob")
	tests := []struct {
		name     string
		sender   domain.Sender
		conv     domain.ConversationID
		clientID string
		kind     string
		body     string
		wantKind string // on success
		// on failure: exactly one of these is set
		wantTooLarge bool
		wantField    string
	}{
		{name: "plain text", sender: alice, conv: conv, clientID: "c1", kind: "text", body: "hi", wantKind: "text"},
		{name: "empty kind defaults to text", sender: alice, conv: conv, clientID: "c1", body: "hi", wantKind: "text"},
		{name: "kind with every allowed char", sender: alice, conv: conv, clientID: "c1", kind: "app/v1.x_y-z9", body: "{}", wantKind: "app/v1.x_y-z9"},
		{name: "kind at max length", sender: alice, conv: conv, clientID: "c1", kind: strings.Repeat("k", domain.MaxKindLen), wantKind: strings.Repeat("k", domain.MaxKindLen)},
		{name: "empty body", sender: alice, conv: conv, clientID: "c1", kind: "text", wantKind: "text"},
		{name: "group conversation", sender: alice, conv: domain.GroupConversation("g1"), clientID: "c1", body: "hi", wantKind: "text"},
		{name: "body exactly at the limit", sender: alice, conv: conv, clientID: "c1", body: strings.Repeat("a", domain.MaxBodyBytes), wantKind: "text"},
		{name: "multi-byte body at the limit", sender: alice, conv: conv, clientID: "c1", body: strings.Repeat("é", domain.MaxBodyBytes/2), wantKind: "text"},
		{name: "client id at max length", sender: alice, conv: conv, clientID: strings.Repeat("c", domain.MaxIDLen), body: "x", wantKind: "text"},

		{name: "body one byte over the limit", sender: alice, conv: conv, clientID: "c1", body: strings.Repeat("a", domain.MaxBodyBytes+1), wantTooLarge: true},
		{name: "multi-byte body over the limit in bytes", sender: alice, conv: conv, clientID: "c1", body: strings.Repeat("é", domain.MaxBodyBytes/2+1), wantTooLarge: true},
		{name: "invalid UTF-8 body", sender: alice, conv: conv, clientID: "c1", body: "ok\xff\xfe", wantField: "body"},
		{name: "truncated UTF-8 body", sender: alice, conv: conv, clientID: "c1", body: "\xe2\x82", wantField: "body"},
		{name: "empty client msg id", sender: alice, conv: conv, clientID: "", body: "hi", wantField: "clientMsgId"},
		{name: "client msg id too long", sender: alice, conv: conv, clientID: strings.Repeat("c", domain.MaxIDLen+1), body: "hi", wantField: "clientMsgId"},
		{name: "client msg id bad char", sender: alice, conv: conv, clientID: "c 1", body: "hi", wantField: "clientMsgId"},
		{name: "kind upper case", sender: alice, conv: conv, clientID: "c1", kind: "Text", body: "hi", wantField: "kind"},
		{name: "kind with space", sender: alice, conv: conv, clientID: "c1", kind: "a b", body: "hi", wantField: "kind"},
		{name: "kind with colon", sender: alice, conv: conv, clientID: "c1", kind: "a:b", body: "hi", wantField: "kind"},
		{name: "kind too long", sender: alice, conv: conv, clientID: "c1", kind: strings.Repeat("k", domain.MaxKindLen+1), body: "hi", wantField: "kind"},
		{name: "zero conversation", sender: alice, clientID: "c1", body: "hi", wantField: "to"},
		{name: "bad sender account", sender: domain.Sender{Account: "a:b", Device: "phone"}, conv: conv, clientID: "c1", body: "hi", wantField: "account"},
		{name: "empty sender device", sender: domain.Sender{Account: "alice"}, conv: conv, clientID: "c1", body: "hi", wantField: "device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := domain.NewDraft(tt.sender, tt.conv, tt.clientID, tt.kind, tt.body)
			switch {
			case tt.wantTooLarge:
				if !errors.Is(err, domain.ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				var le *domain.LimitError
				if !errors.As(err, &le) || le.Limit != domain.MaxBodyBytes || le.Got != len(tt.body) {
					t.Errorf("err = %#v, want LimitError{Limit: %d, Got: %d}", err, domain.MaxBodyBytes, len(tt.body))
				}
			case tt.wantField != "":
				var inv *domain.InvalidError
				if !errors.As(err, &inv) {
					t.Fatalf("err = %v, want *InvalidError", err)
				}
				if inv.Field != tt.wantField {
					t.Errorf("InvalidError.Field = %q (%v), want %q", inv.Field, err, tt.wantField)
				}
				if errors.Is(err, domain.ErrTooLarge) {
					t.Errorf("validation error %v matches ErrTooLarge", err)
				}
			default:
				if err != nil {
					t.Fatalf("NewDraft: %v", err)
				}
				want := domain.Draft{ClientMsgID: tt.clientID, Sender: tt.sender, Conversation: tt.conv, Kind: tt.wantKind, Body: tt.body}
				if d != want {
					t.Errorf("NewDraft = %+v, want %+v", d, want)
				}
				return
			}
			if d != (domain.Draft{}) {
				t.Errorf("NewDraft returned %+v with an error", d)
			}
		})
	}
}

func TestLimitErrorMatchesOnlyErrTooLarge(t *testing.T) {
	err := error(&domain.LimitError{Field: "x", Limit: 1, Got: 2})
	if !errors.Is(err, domain.ErrTooLarge) {
		t.Errorf("LimitError does not match ErrTooLarge")
	}
	for _, other := range []error{domain.ErrForbidden, domain.ErrNotFound, domain.ErrNotMember} {
		if errors.Is(err, other) {
			t.Errorf("LimitError matches %v", other)
		}
	}
	if got, want := err.Error(), "x is 2, over the limit of 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
