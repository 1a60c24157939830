package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestParseIDs(t *testing.T) {
	parsers := map[string]func(string) (string, error){
		"account": func(s string) (string, error) { a, err := domain.ParseAccountID(s); return string(a), err },
		"device":  func(s string) (string, error) { d, err := domain.ParseDeviceID(s); return string(d), err },
		"group":   func(s string) (string, error) { g, err := domain.ParseGroupID(s); return string(g), err },
	}
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"single letter", "a", true},
		{"every allowed class", "Az09._@-", true},
		{"email like", "alice.smith@example.com", true},
		{"exactly max length", strings.Repeat("x", domain.MaxIDLen), true},
		{"empty", "", false},
		{"one over max length", strings.Repeat("x", domain.MaxIDLen+1), false},
		{"colon is reserved", "a:b", false},
		{"slash is reserved", "a/b", false},
		{"space", "a b", false},
		{"plus", "a+b", false},
		{"NUL byte", "a\x00", false},
		{"non-ASCII letter", "é", false},
		{"emoji", "😀", false},
		{"newline", "alice\n", false},
	}
	for kind, parse := range parsers {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				got, err := parse(tt.in)
				if !tt.valid {
					var inv *domain.InvalidError
					if !errors.As(err, &inv) {
						t.Fatalf("parse(%q) = %q, %v; want *InvalidError", tt.in, got, err)
					}
					if inv.Field != kind {
						t.Errorf("InvalidError.Field = %q, want %q", inv.Field, kind)
					}
					if got != "" {
						t.Errorf("parse(%q) returned %q with an error; want empty", tt.in, got)
					}
					return
				}
				if err != nil {
					t.Fatalf("parse(%q): unexpected error %v", tt.in, err)
				}
				if got != tt.in {
					t.Errorf("parse(%q) = %q", tt.in, got)
				}
			})
		}
	}
}

func TestUniqueIDRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		account domain.AccountID
		device  domain.DeviceID
		want    domain.UniqueID
	}{
		{"plain", "alice", "phone", "alice/phone"},
		{"dots and at", "a.b@c", "dev-1_x", "a.b@c/dev-1_x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := domain.NewUniqueID(tt.account, tt.device)
			if u != tt.want {
				t.Fatalf("NewUniqueID = %q, want %q", u, tt.want)
			}
			a, d := u.Split()
			if a != tt.account || d != tt.device {
				t.Errorf("Split() = %q, %q; want %q, %q", a, d, tt.account, tt.device)
			}
		})
	}
}
