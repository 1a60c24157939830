package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestDirectConversationIsSymmetric(t *testing.T) {
	tests := []struct {
		name string
		x, y domain.AccountID
		want string
	}{
		{"already ordered", "alice", "bob", "d:alice:bob"},
		{"reversed", "bob", "alice", "d:alice:bob"},
		{"byte order, not case-folded", "bob", "Zed", "d:Zed:bob"},
		{"notes to self", "alice", "alice", "d:alice:alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xy := domain.DirectConversation(tt.x, tt.y)
			yx := domain.DirectConversation(tt.y, tt.x)
			if xy != yx {
				t.Fatalf("DirectConversation(%q,%q) = %v, reversed = %v; want equal", tt.x, tt.y, xy, yx)
			}
			if got := xy.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if xy.Kind() != domain.KindDirect || xy.IsZero() {
				t.Errorf("Kind() = %v, IsZero() = %v; want direct, false", xy.Kind(), xy.IsZero())
			}
			a, b := xy.Accounts()
			if a > b {
				t.Errorf("Accounts() = %q, %q; want ordered", a, b)
			}
			if !xy.HasParticipant(tt.x) || !xy.HasParticipant(tt.y) {
				t.Errorf("HasParticipant false for a participant")
			}
			if xy.HasParticipant("mallory") {
				t.Errorf("HasParticipant(mallory) = true")
			}
			if got := xy.Peer(tt.x); got != tt.y {
				t.Errorf("Peer(%q) = %q, want %q", tt.x, got, tt.y)
			}
			if got := xy.Peer(tt.y); got != tt.x {
				t.Errorf("Peer(%q) = %q, want %q", tt.y, got, tt.x)
			}
			if xy.Group() != "" {
				t.Errorf("Group() = %q on a direct conversation", xy.Group())
			}
		})
	}
}

func TestGroupConversation(t *testing.T) {
	c := domain.GroupConversation("team-1")
	if c.Kind() != domain.KindGroup || c.Group() != "team-1" || c.String() != "g:team-1" {
		t.Fatalf("GroupConversation = kind %v group %q string %q", c.Kind(), c.Group(), c.String())
	}
	// Group membership is not in the id.
	if c.HasParticipant("team-1") {
		t.Errorf("HasParticipant on a group conversation = true")
	}
	if c == domain.DirectConversation("g", "team-1") {
		t.Errorf("a group conversation equals a direct one")
	}
}

func TestZeroConversation(t *testing.T) {
	var c domain.ConversationID
	if !c.IsZero() || c.Kind() != 0 || c.String() != "" {
		t.Fatalf("zero ConversationID: IsZero %v Kind %v String %q", c.IsZero(), c.Kind(), c.String())
	}
	if got := c.Kind().String(); got != "unknown" {
		t.Errorf("Kind().String() = %q, want unknown", got)
	}
	if domain.KindDirect.String() != "direct" || domain.KindGroup.String() != "group" {
		t.Errorf("kind names: %q %q", domain.KindDirect, domain.KindGroup)
	}
}

func TestParseConversationIDRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		id   domain.ConversationID
	}{
		{"direct", domain.DirectConversation("alice", "bob")},
		{"direct reversed input", domain.DirectConversation("bob", "alice")},
		{"direct self", domain.DirectConversation("carol", "carol")},
		{"direct with every id char", domain.DirectConversation("a.b_c-d@e", "Z9")},
		{"direct max-length ids", domain.DirectConversation(domain.AccountID(strings.Repeat("a", domain.MaxIDLen)), domain.AccountID(strings.Repeat("b", domain.MaxIDLen)))},
		{"group", domain.GroupConversation("g-123")},
		{"group max-length id", domain.GroupConversation(domain.GroupID(strings.Repeat("g", domain.MaxIDLen)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.id.String()
			got, err := domain.ParseConversationID(s)
			if err != nil {
				t.Fatalf("ParseConversationID(%q): %v", s, err)
			}
			if got != tt.id {
				t.Errorf("ParseConversationID(%q) = %#v, want %#v", s, got, tt.id)
			}
			if got.String() != s {
				t.Errorf("round trip String() = %q, want %q", got.String(), s)
			}
		})
	}
}

// The text form is made where the id is: every key, event and frame
// writes it, and reading it back, or the accounts in it, costs nothing.
func TestConversationTextFormCostsNoAllocation(t *testing.T) {
	d, g := domain.DirectConversation("bob", "alice"), domain.GroupConversation("team-1")
	text := "d:alice:bob"
	allocs := testing.AllocsPerRun(100, func() {
		a, b := d.Accounts()
		parsed, err := domain.ParseConversationID(text)
		if err != nil {
			t.Fatal(err)
		}
		// Kept past the call, as a key or an event field is.
		kept = append(kept[:0], d.String(), g.String(), string(a), string(b), string(d.Peer(a)), string(g.Group()), parsed.String())
	})
	if allocs != 0 {
		t.Errorf("String, Accounts, Peer, Group and ParseConversationID allocate %.0f times, want 0", allocs)
	}
}

var kept = make([]string, 0, 8)

func TestParseConversationIDRejectsMalformed(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string // the InvalidError field expected
	}{
		{"empty", "", "conversation"},
		{"missing prefix", "alice", "conversation"},
		{"missing prefix with accounts", "alice:bob", "conversation"},
		{"unknown kind", "x:alice", "conversation"},
		{"upper-case kind", "D:alice:bob", "conversation"},
		{"direct with one account", "d:alice", "conversation"},
		{"direct in wrong order", "d:bob:alice", "conversation"},
		{"direct empty first account", "d::bob", "account"},
		{"direct empty second account", "d:alice:", "account"},
		{"direct three parts", "d:alice:bob:carol", "account"},
		{"direct bad char", "d:al ice:bob", "account"},
		{"direct slash", "d:alice:bob/phone", "account"},
		{"direct over-long account", "d:a:" + strings.Repeat("b", domain.MaxIDLen+1), "account"},
		{"group empty", "g:", "group"},
		{"group with colon", "g:a:b", "group"},
		{"group bad char", "g:a#b", "group"},
		{"group over-long", "g:" + strings.Repeat("g", domain.MaxIDLen+1), "group"},
		{"just a colon", ":", "conversation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.ParseConversationID(tt.in)
			var inv *domain.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("ParseConversationID(%q) = %v, %v; want *InvalidError", tt.in, got, err)
			}
			if inv.Field != tt.wantField {
				t.Errorf("InvalidError.Field = %q (%v), want %q", inv.Field, err, tt.wantField)
			}
			if !got.IsZero() {
				t.Errorf("ParseConversationID(%q) returned non-zero %v with an error", tt.in, got)
			}
		})
	}
}
