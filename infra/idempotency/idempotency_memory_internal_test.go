package idempotency

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Reservations that expire unanswered are dropped by a later reservation
// once the sweep interval has passed, though no one asks for them again.
func TestMemorySweepsExpiredReservations(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := NewMemory(func() time.Time { return now })
	reserve := func(i int) {
		t.Helper()
		if _, err := m.Reserve(context.Background(), Key{Account: "a", ClientMsgID: fmt.Sprint(i)}, 0, time.Second, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		reserve(i)
	}
	now = now.Add(11 * time.Second) // all expired, the sweep not yet due
	reserve(100)
	if n := len(m.entries); n != 101 {
		t.Fatalf("%d entries before the sweep is due, want 101", n)
	}
	now = now.Add(sweepEvery)
	reserve(101)
	if n := len(m.entries); n != 1 {
		t.Fatalf("%d entries after the sweep, want 1 (the new one)", n)
	}
}
