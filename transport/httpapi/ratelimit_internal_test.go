package httpapi

import "testing"

func TestAddressKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7:5555":                  "192.0.2.7",
		"[::ffff:192.0.2.7]:5555":         "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":      "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1%eth0]:443": "2001:db8:1:2::/64",
		"not an address":                  "not an address",
	}
	for in, want := range tests {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
}
