package api

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/idempotency"
)

// An attempt that outlives its lease keeps its reservation while it is
// held, and loses it after its lease once released: a resend then takes
// it over.
func TestLeasesKeepAHeldReservation(t *testing.T) {
	const lease = 90 * time.Millisecond
	store := idempotency.NewMemory(nil)
	l := &leases{every: lease / 3, log: slog.New(slog.DiscardHandler),
		extend: func(ctx context.Context, k idempotency.Key, token string) error {
			return store.Extend(ctx, k, token, lease)
		}}
	ctx := context.Background()
	slow := idempotency.Key{Account: "alice", ClientMsgID: "slow"}
	quick := idempotency.Key{Account: "alice", ClientMsgID: "quick"}
	reserve := func(k idempotency.Key) idempotency.Entry {
		t.Helper()
		e, err := store.Reserve(ctx, k, 0, lease, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := reserve(slow)
	l.hold(slow, first.Token)
	q := reserve(quick)
	l.hold(quick, q.Token)
	l.release(quick, q.Token)

	// Four leases long, the held one is still the first attempt's.
	deadline := time.Now().Add(4 * lease)
	for time.Now().Before(deadline) {
		if e := reserve(slow); e.State != idempotency.Pending {
			t.Fatalf("a resend while the attempt holds its reservation: state %v, want pending", e.State)
		}
		time.Sleep(lease / 10)
	}
	// The released one lapsed: a resend takes it over.
	if e := reserve(quick); e.State != idempotency.Reserved {
		t.Fatalf("a resend after the released lease ran out: state %v, want reserved", e.State)
	}

	l.release(slow, first.Token)
	time.Sleep(2 * lease)
	if e := reserve(slow); e.State != idempotency.Reserved {
		t.Fatalf("a resend after the attempt let go and its lease ran out: state %v, want reserved", e.State)
	}
	// Nothing held: no timer waits.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil || len(l.held) != 0 {
		t.Errorf("after every release: timer %v, %d held; want none", l.timer, len(l.held))
	}
}

// Attempts that end before their first renewal are never renewed.
func TestLeasesRenewNothingReleasedInTime(t *testing.T) {
	var mu sync.Mutex
	renewed := 0
	l := &leases{every: 30 * time.Millisecond, log: slog.New(slog.DiscardHandler),
		extend: func(context.Context, idempotency.Key, string) error {
			mu.Lock()
			renewed++
			mu.Unlock()
			return nil
		}}
	for i := range 1000 {
		k := idempotency.Key{Account: "alice", ClientMsgID: string(rune('a' + i%26))}
		l.hold(k, "t")
		l.release(k, "t")
	}
	time.Sleep(4 * l.every)
	mu.Lock()
	defer mu.Unlock()
	if renewed != 0 {
		t.Errorf("renewed %d leases released before their renewal, want 0", renewed)
	}
}

// recordingHandler keeps the messages logged through it.
type recordingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.msgs)
}

// A renewal that fails is logged while the attempt holds the reservation,
// not once the attempt has let go of it.
func TestLeasesLogFailedRenewalsOfHeldReservations(t *testing.T) {
	logs := &recordingHandler{}
	proceed := make(chan struct{})
	calls := make(chan idempotency.Key, 10)
	l := &leases{every: 20 * time.Millisecond, log: slog.New(logs),
		extend: func(_ context.Context, k idempotency.Key, _ string) error {
			select {
			case calls <- k:
			default:
			}
			if k.ClientMsgID == "released" {
				<-proceed
			}
			return idempotency.ErrNotOwner
		}}
	held := idempotency.Key{Account: "alice", ClientMsgID: "held"}
	released := idempotency.Key{Account: "alice", ClientMsgID: "released"}
	l.hold(released, "t")
	for k := range calls { // the released one's renewal is under way
		if k == released {
			break
		}
	}
	l.release(released, "t")
	close(proceed)
	time.Sleep(10 * time.Millisecond)
	if n := logs.count(); n != 0 {
		t.Fatalf("%d warnings for a renewal of a reservation let go of, want 0", n)
	}
	l.hold(held, "t")
	defer l.release(held, "t")
	deadline := time.Now().Add(10 * time.Second)
	for logs.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a failed renewal of a held reservation was not logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Thousands of leases due at once (sends waiting for a broker that does
// not answer) are all renewed, by at most renewers goroutines at a time
// however the rounds overlap (their due times spread over the holds, so
// rounds follow each other within milliseconds).
func TestLeasesRenewManyByABoundedFew(t *testing.T) {
	const n = 3 * renewers
	var mu sync.Mutex
	running, most := 0, 0
	renewed := map[string]bool{}
	all := make(chan struct{})
	l := &leases{every: 30 * time.Millisecond, log: slog.New(slog.DiscardHandler),
		extend: func(_ context.Context, k idempotency.Key, _ string) error {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(time.Millisecond) // a round trip, so that they overlap
			mu.Lock()
			running--
			if !renewed[k.ClientMsgID] {
				renewed[k.ClientMsgID] = true
				if len(renewed) == n {
					close(all)
				}
			}
			mu.Unlock()
			return nil
		}}
	for i := range n {
		l.hold(idempotency.Key{Account: "alice", ClientMsgID: fmt.Sprint("c", i)}, "t")
	}
	defer func() {
		for i := range n {
			l.release(idempotency.Key{Account: "alice", ClientMsgID: fmt.Sprint("c", i)}, "t")
		}
	}()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d leases renewed", len(renewed), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > renewers {
		t.Errorf("%d renewals at once, want at most %d", most, renewers)
	}
}
