package ratelimit_test

import (
	"testing"

	"github.com/parley-chat/parley/infra/ratelimit"
)

func TestAddressKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7:5555":                  "192.0.2.7",
		"[::ffff:192.0.2.7]:5555":         "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":      "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1%eth0]:443": "2001:db8:1:2::/64",
		"not an address":                  "not an address",
		"192.0.2.7":                       "192.0.2.7",
	}
	for in, want := range tests {
		if got := ratelimit.AddressKey(in); got != want {
			t.Errorf("AddressKey(%q) = %q, want %q", in, got, want)
		}
	}
}
