package httpapi

import (
	"fmt"
	"testing"
	"time"
)

// The buckets never exceed max, however many keys come, and buckets that
// have filled up again are forgotten.
func TestLimitersBounded(t *testing.T) {
	const max = 64
	l := newLimiters(1, 2, max)
	now := time.Now()
	for i := range 10 * max {
		key := fmt.Sprintf("k%d", i)
		// Every key drains its bucket, so that none can be swept as full.
		for range 3 {
			l.take(key, now)
		}
		if n := l.size(); n > max {
			t.Fatalf("%d buckets after %d keys, want at most %d", n, i+1, max)
		}
	}
	// Two seconds later every bucket is full again: the next sweep
	// forgets them all.
	l.take("late", now.Add(sweepEvery+time.Second))
	if n := l.size(); n != 1 {
		t.Errorf("%d buckets after every bucket refilled, want 1 (the new key)", n)
	}
}

// A refused request takes no token: a client that keeps retrying too
// early is not pushed further back.
func TestLimitersRefusalTakesNothing(t *testing.T) {
	l := newLimiters(10, 1, 8)
	now := time.Now()
	if l.take("a", now) != 0 {
		t.Fatal("first request refused")
	}
	first := l.take("a", now)
	for range 5 {
		if got := l.take("a", now); got != first {
			t.Fatalf("wait grew from %v to %v with refused retries", first, got)
		}
	}
	if first <= 0 || first > 100*time.Millisecond {
		t.Errorf("wait %v, want about 100ms", first)
	}
}

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
