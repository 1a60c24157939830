package ratelimit_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/ratelimit"
)

// The buckets never exceed max, however many keys come, and buckets that
// have filled up again are forgotten.
func TestKeyedBounded(t *testing.T) {
	const max = 64
	l := ratelimit.New(1, 2, max)
	now := time.Now()
	for i := range 10 * max {
		key := fmt.Sprintf("k%d", i)
		// Every key drains its bucket, so that none can be swept as full.
		for range 3 {
			l.Take(key, now)
		}
		if n := l.Size(); n > max {
			t.Fatalf("%d buckets after %d keys, want at most %d", n, i+1, max)
		}
	}
	// Two seconds later every bucket is full again: the next sweep
	// forgets them all.
	l.Take("late", now.Add(ratelimit.SweepEvery+time.Second))
	if n := l.Size(); n != 1 {
		t.Errorf("%d buckets after every bucket refilled, want 1 (the new key)", n)
	}
}

// A refused request takes no token: a client that keeps retrying too
// early is not pushed further back.
func TestKeyedRefusalTakesNothing(t *testing.T) {
	l := ratelimit.New(10, 1, 8)
	now := time.Now()
	if l.Take("a", now) != 0 {
		t.Fatal("first request refused")
	}
	first := l.Take("a", now)
	for range 5 {
		if got := l.Take("a", now); got != first {
			t.Fatalf("wait grew from %v to %v with refused retries", first, got)
		}
	}
	if first <= 0 || first > 100*time.Millisecond {
		t.Errorf("wait %v, want about 100ms", first)
	}
}

// TakeN takes n tokens or, refused, nothing; GiveBack returns them.
func TestKeyedTakeNAndGiveBack(t *testing.T) {
	l := ratelimit.New(1000, 4000, 8) // 1000 tokens a second
	now := time.Now()
	if w := l.TakeN("a", 3000, now); w != 0 {
		t.Fatalf("TakeN(3000) of a full bucket of 4000 = %v, want 0", w)
	}
	for range 3 {
		if w := l.TakeN("a", 3000, now); w != 2*time.Second {
			t.Fatalf("TakeN(3000) with 1000 left = %v, want 2s", w)
		}
	}
	if w := l.TakeN("a", 3000, now.Add(2*time.Second)); w != 0 {
		t.Fatalf("TakeN(3000) two seconds later = %v, want 0", w)
	}
	l.GiveBack("a", 3000, now.Add(2*time.Second))
	if w := l.TakeN("a", 3000, now.Add(2*time.Second)); w != 0 {
		t.Errorf("TakeN(3000) after giving 3000 back = %v, want 0", w)
	}
	l.GiveBack("a", 1e6, now.Add(2*time.Second)) // never past the burst
	if w := l.TakeN("a", 4001, now.Add(time.Hour)); w != ratelimit.MaxWait {
		t.Errorf("TakeN above the burst = %v, want MaxWait", w)
	}
	if w := l.TakeN("a", -5000, now.Add(2*time.Second)); w != 0 {
		t.Errorf("TakeN(-5000) = %v, want 0 and nothing taken or given", w)
	}
	if w := l.TakeN("a", 4000, now.Add(2*time.Second)); w != 0 {
		t.Errorf("TakeN(4000) of a bucket given back to its burst = %v, want 0", w)
	}
	if w := l.TakeN("b", 4000, now); w != 0 {
		t.Errorf("another key's TakeN = %v, want 0: buckets are per key", w)
	}
	off := ratelimit.New(-1, 1, 1)
	off.GiveBack("a", 1, now)
	if off.TakeN("a", 1e9, now) != 0 || off.Take("a", now) != 0 || off.Size() != 0 {
		t.Error("a limit that is off refused, or counts buckets")
	}
	// A rate so slow that the wait overflows a Duration waits MaxWait.
	slow := ratelimit.New(1e-12, 10, 1)
	slow.TakeN("a", 10, now)
	if w := slow.TakeN("a", 10, now); w != ratelimit.MaxWait {
		t.Errorf("TakeN at 1e-12 a second = %v, want MaxWait", w)
	}
}

// What a send's check costs: 2,000 accounts sending at once, each
// message taking ~1.1 KiB from its account's bucket (a send's path does
// this once; a refusal or a duplicate gives it back).
func BenchmarkKeyedTakeN(b *testing.B) {
	l := ratelimit.New(256<<10, 1<<20, 65536)
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = fmt.Sprintf("account-%d", i)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			l.TakeN(keys[i%int64(len(keys))], 1124, time.Now())
		}
	})
}

// Charge takes tokens after the fact, into a debt the next requests wait
// for, however deep.
func TestChargeLeavesADebt(t *testing.T) {
	l := ratelimit.New(10, 5, 100)
	now := time.Unix(1000, 0)
	l.Charge("a", 3, now)
	if w := l.TakeN("a", 2, now); w != 0 {
		t.Fatalf("the tokens left after a charge of 3 of 5: wait %v", w)
	}
	l.Charge("a", 50, now) // 0 - 50
	if w := l.Take("a", now); w != 5100*time.Millisecond {
		t.Errorf("after a charge past the burst: wait %v, want 5.1s (a debt of 50 and the token, at 10/s)", w)
	}
	if w := l.Take("b", now); w != 0 {
		t.Errorf("another key pays for nothing: wait %v", w)
	}
	var off *ratelimit.Keyed
	off.Charge("a", 1, now) // a nil limit charges nothing
}
