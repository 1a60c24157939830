package auth_test

import (
	"testing"

	"github.com/parley-chat/parley/transport/auth"
)

func TestSecretEqual(t *testing.T) {
	tests := []struct {
		name      string
		got, want string
		equal     bool
	}{
		{"same", "0123456789abcdef", "0123456789abcdef", true},
		{"differs in the last byte", "0123456789abcdeX", "0123456789abcdef", false},
		{"a prefix", "0123456789abcde", "0123456789abcdef", false},
		{"longer", "0123456789abcdef0", "0123456789abcdef", false},
		{"empty got", "", "0123456789abcdef", false},
		{"empty want never matches", "", "", false},
		{"empty want, any got", "x", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.SecretEqual([]byte(tt.got), []byte(tt.want)); got != tt.equal {
				t.Errorf("SecretEqual(%q, %q) = %v, want %v", tt.got, tt.want, got, tt.equal)
			}
		})
	}
}
