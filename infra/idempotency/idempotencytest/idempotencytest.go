// Package idempotencytest is the contract every idempotency.Reservations
// adapter passes.
package idempotencytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/idempotency"
)

// Run runs the contract against adapters made by newRes; each call must
// return an empty adapter of its own. Leases and TTLs are real time, a few
// hundred milliseconds at most.
func Run(t *testing.T, newRes func(t *testing.T) idempotency.Reservations) {
	ctx := context.Background()
	const long = time.Minute
	k := idempotency.Key{Account: "alice", ClientMsgID: "c-1"}
	ack := idempotency.Ack{MsgID: 281474976710660, MessageID: uuid.Must(uuid.NewV7()),
		Conversation: domain.DirectConversation("alice", "bob"), ServerTime: time.UnixMilli(1795715192859)}

	t.Run("the first reserves, the rest wait, then all get the ack", func(t *testing.T) {
		r := newRes(t)
		e := reserve(t, r, k, 3, long, long)
		if e.State != idempotency.Reserved || e.Token == "" || len(e.Earlier) != 0 {
			t.Fatalf("first reserve: %+v", e)
		}
		if got := reserve(t, r, k, 5, long, long); got.State != idempotency.Pending {
			t.Fatalf("second reserve while pending: %+v", got)
		}
		// Another account's id of the same name is another key.
		if got := reserve(t, r, idempotency.Key{Account: "bob", ClientMsgID: "c-1"}, 3, long, long); got.State != idempotency.Reserved {
			t.Fatalf("another account's key: %+v", got)
		}
		if err := r.Complete(ctx, k, e.Token, ack, long); err != nil {
			t.Fatal(err)
		}
		got := reserve(t, r, k, 7, long, long)
		if got.State != idempotency.Done || !sameAck(got.Ack, ack) {
			t.Fatalf("reserve after complete: %+v, want done with %+v", got, ack)
		}
	})
	t.Run("only the holder completes, extends or abandons", func(t *testing.T) {
		r := newRes(t)
		e := reserve(t, r, k, 3, long, long)
		for name, err := range map[string]error{
			"complete": r.Complete(ctx, k, "not-the-token", ack, long),
			"extend":   r.Extend(ctx, k, "not-the-token", long),
			"abandon":  r.Abandon(ctx, k, "not-the-token"),
		} {
			if !errors.Is(err, idempotency.ErrNotOwner) {
				t.Errorf("%s with a wrong token: %v, want ErrNotOwner", name, err)
			}
		}
		if err := r.Complete(ctx, k, e.Token, ack, long); err != nil {
			t.Fatal(err)
		}
		// Done is final: not even the holder changes it.
		if err := r.Abandon(ctx, k, e.Token); !errors.Is(err, idempotency.ErrNotOwner) {
			t.Errorf("abandon after complete: %v, want ErrNotOwner", err)
		}
		if err := r.Complete(ctx, idempotency.Key{Account: "alice", ClientMsgID: "never"}, e.Token, ack, long); !errors.Is(err, idempotency.ErrNotOwner) {
			t.Errorf("complete of a key never reserved: %v, want ErrNotOwner", err)
		}
	})
	t.Run("an abandoned attempt is taken over at once, naming its partitions", func(t *testing.T) {
		r := newRes(t)
		first := reserve(t, r, k, 3, long, long)
		if err := r.Abandon(ctx, k, first.Token); err != nil {
			t.Fatal(err)
		}
		second := reserve(t, r, k, 5, long, long)
		if second.State != idempotency.Reserved || second.Token == first.Token || !slices.Equal(second.Earlier, []int32{3}) {
			t.Fatalf("reserve after abandon: %+v, want reserved with earlier [3]", second)
		}
		if err := r.Complete(ctx, k, first.Token, ack, long); !errors.Is(err, idempotency.ErrNotOwner) {
			t.Errorf("the abandoned attempt completes: %v, want ErrNotOwner", err)
		}
		if err := r.Abandon(ctx, k, second.Token); err != nil {
			t.Fatal(err)
		}
		third := reserve(t, r, k, 3, long, long)
		if got := sorted(third.Earlier); third.State != idempotency.Reserved || !slices.Equal(got, []int32{3, 5}) {
			t.Fatalf("third attempt: %+v, want reserved with earlier [3 5]", third)
		}
	})
	t.Run("a lease that runs out is taken over; one extended is not", func(t *testing.T) {
		r := newRes(t)
		const lease = 300 * time.Millisecond
		first := reserve(t, r, k, 1, lease, long)
		time.Sleep(lease / 2)
		if err := r.Extend(ctx, k, first.Token, lease); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lease * 2 / 3)
		if got := reserve(t, r, k, 2, lease, long); got.State != idempotency.Pending {
			t.Fatalf("reserve within an extended lease: %+v, want pending", got)
		}
		time.Sleep(lease)
		got := reserve(t, r, k, 2, lease, long)
		if got.State != idempotency.Reserved || !slices.Equal(got.Earlier, []int32{1}) {
			t.Fatalf("reserve after the lease ran out: %+v, want reserved with earlier [1]", got)
		}
		if err := r.Extend(ctx, k, first.Token, lease); !errors.Is(err, idempotency.ErrNotOwner) {
			t.Errorf("the lapsed attempt extends: %v, want ErrNotOwner", err)
		}
	})
	t.Run("a reservation lives for its ttl", func(t *testing.T) {
		r := newRes(t)
		const ttl = 300 * time.Millisecond
		e := reserve(t, r, k, 1, long, ttl)
		if err := r.Complete(ctx, k, e.Token, ack, ttl); err != nil {
			t.Fatal(err)
		}
		if got := reserve(t, r, k, 1, long, ttl); got.State != idempotency.Done {
			t.Fatalf("within the ttl: %+v", got)
		}
		time.Sleep(ttl + 100*time.Millisecond)
		if got := reserve(t, r, k, 1, long, ttl); got.State != idempotency.Reserved || len(got.Earlier) != 0 {
			t.Fatalf("after the ttl: %+v, want a fresh reservation", got)
		}
	})
	t.Run("forget drops a finished reservation, never a pending one", func(t *testing.T) {
		r := newRes(t)
		e := reserve(t, r, k, 1, long, long)
		if err := r.Forget(ctx, k); err != nil {
			t.Fatal(err)
		}
		if got := reserve(t, r, k, 1, long, long); got.State != idempotency.Pending {
			t.Fatalf("forget dropped a pending reservation: %+v", got)
		}
		if err := r.Complete(ctx, k, e.Token, ack, long); err != nil {
			t.Fatal(err)
		}
		if err := r.Forget(ctx, k); err != nil {
			t.Fatal(err)
		}
		if got := reserve(t, r, k, 1, long, long); got.State != idempotency.Reserved {
			t.Fatalf("after forget: %+v, want reserved", got)
		}
	})
	t.Run("forget drops many finished reservations in one call", func(t *testing.T) {
		r := newRes(t)
		keys := make([]idempotency.Key, 600) // more than one Redis pipeline
		for i := range keys {
			keys[i] = idempotency.Key{Account: k.Account, ClientMsgID: fmt.Sprint("many-", i)}
			e := reserve(t, r, keys[i], 1, long, long)
			if i%100 == 99 {
				continue // this one stays pending
			}
			if err := r.Complete(ctx, keys[i], e.Token, ack, long); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Forget(ctx, keys...); err != nil {
			t.Fatal(err)
		}
		for i, key := range keys {
			want := idempotency.Reserved
			if i%100 == 99 {
				want = idempotency.Pending
			}
			if got := reserve(t, r, key, 1, long, long); got.State != want {
				t.Fatalf("key %d after forgetting many: %+v, want state %v", i, got, want)
			}
		}
	})
	t.Run("of many concurrent reserves exactly one holds the key", func(t *testing.T) {
		r := newRes(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		held := 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e, err := r.Reserve(ctx, k, int32(i%4), long, long)
				if err != nil {
					t.Error(err)
					return
				}
				if e.State == idempotency.Reserved {
					mu.Lock()
					held++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if held != 1 {
			t.Fatalf("%d concurrent reserves held the key, want 1", held)
		}
	})
}

func reserve(t *testing.T, r idempotency.Reservations, k idempotency.Key, partition int32, lease, ttl time.Duration) idempotency.Entry {
	t.Helper()
	e, err := r.Reserve(context.Background(), k, partition, lease, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func sameAck(a, b idempotency.Ack) bool {
	return a.MsgID == b.MsgID && a.MessageID == b.MessageID && a.Conversation == b.Conversation && a.ServerTime.Equal(b.ServerTime)
}

func sorted(p []int32) []int32 {
	p = slices.Clone(p)
	slices.Sort(p)
	return p
}
