// Package routestest is the contract every routes.Table adapter passes.
package routestest

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/routes"
)

// Run runs the contract against tables made by newTable; each call must
// return an empty table of its own.
func Run(t *testing.T, newTable func(t *testing.T) routes.Table) {
	ctx := context.Background()
	alicePhone := domain.NewUniqueID("alice", "phone")
	aliceLaptop := domain.NewUniqueID("alice", "laptop")

	t.Run("claim, lookup, online, release", func(t *testing.T) {
		tb := newTable(t)
		mustBeat(t, tb, "10.0.0.1:8080")
		if prev, err := tb.Claim(ctx, alicePhone, "10.0.0.1:8080", false); err != nil || prev != "" {
			t.Fatalf("first claim: %q %v", prev, err)
		}
		if _, err := tb.Claim(ctx, aliceLaptop, "10.0.0.2:8080", false); err != nil {
			t.Fatal(err)
		}
		got, err := tb.Lookup(ctx, []domain.UniqueID{alicePhone, aliceLaptop, "bob/phone"})
		if err != nil || len(got) != 2 || got[alicePhone] != "10.0.0.1:8080" || got[aliceLaptop] != "10.0.0.2:8080" {
			t.Fatalf("lookup %v %v", got, err)
		}
		assertOnline(t, tb, "alice", alicePhone, aliceLaptop)
		// Only the owner releases.
		if err := tb.Release(ctx, alicePhone, "10.0.0.9:8080"); err != nil {
			t.Fatal(err)
		}
		assertOnline(t, tb, "alice", alicePhone, aliceLaptop)
		if err := tb.Release(ctx, alicePhone, "10.0.0.1:8080"); err != nil {
			t.Fatal(err)
		}
		assertOnline(t, tb, "alice", aliceLaptop)
		got, _ = tb.Lookup(ctx, []domain.UniqueID{alicePhone})
		if len(got) != 0 {
			t.Errorf("released route still found: %v", got)
		}
	})
	t.Run("a live owner refuses, a dead one is taken over", func(t *testing.T) {
		tb := newTable(t)
		mustBeat(t, tb, "a:1")
		if _, err := tb.Claim(ctx, alicePhone, "a:1", false); err != nil {
			t.Fatal(err)
		}
		prev, err := tb.Claim(ctx, alicePhone, "b:1", false)
		if !errors.Is(err, routes.ErrHeld) || prev != "a:1" {
			t.Fatalf("claim of a live route: %q %v, want ErrHeld from a:1", prev, err)
		}
		// The same instance may claim again (its gateway decides locally).
		if _, err := tb.Claim(ctx, alicePhone, "a:1", false); err != nil {
			t.Fatalf("reclaim by the owner: %v", err)
		}
		if err := tb.Forget(ctx, "a:1"); err != nil {
			t.Fatal(err)
		}
		if alive, _ := tb.Alive(ctx, "a:1"); alive {
			t.Fatal("forgotten instance still alive")
		}
		prev, err = tb.Claim(ctx, alicePhone, "b:1", false)
		if err != nil || prev != "a:1" {
			t.Fatalf("takeover from a dead owner: %q %v", prev, err)
		}
		// The old owner's late release must not remove the new route.
		_ = tb.Release(ctx, alicePhone, "a:1")
		got, _ := tb.Lookup(ctx, []domain.UniqueID{alicePhone})
		if got[alicePhone] != "b:1" {
			t.Errorf("route after a stale release: %v", got)
		}
	})
	t.Run("force replaces a live owner", func(t *testing.T) {
		tb := newTable(t)
		mustBeat(t, tb, "a:1")
		_, _ = tb.Claim(ctx, alicePhone, "a:1", false)
		prev, err := tb.Claim(ctx, alicePhone, "b:1", true)
		if err != nil || prev != "a:1" {
			t.Fatalf("forced claim: %q %v", prev, err)
		}
	})
	t.Run("refresh by the owner only", func(t *testing.T) {
		tb := newTable(t)
		_, _ = tb.Claim(ctx, alicePhone, "a:1", false)
		if err := tb.Refresh(ctx, alicePhone, "a:1"); err != nil {
			t.Fatal(err)
		}
		if err := tb.Refresh(ctx, alicePhone, "x:1"); err != nil {
			t.Fatal(err)
		}
		got, _ := tb.Lookup(ctx, []domain.UniqueID{alicePhone})
		if got[alicePhone] != "a:1" {
			t.Errorf("route after refresh: %v", got)
		}
	})
	t.Run("presence", func(t *testing.T) { runPresence(t, newTable) })
	t.Run("liveness", func(t *testing.T) {
		tb := newTable(t)
		if alive, err := tb.Alive(ctx, "n:1"); err != nil || alive {
			t.Fatalf("never-beaten instance alive: %v %v", alive, err)
		}
		mustBeat(t, tb, "n:1")
		if alive, err := tb.Alive(ctx, "n:1"); err != nil || !alive {
			t.Fatalf("beaten instance not alive: %v %v", alive, err)
		}
	})
}

// presence: an account turns online with its first routed device and
// offline with its last, by a release (LastSeen then) or by the reaping of
// a dead instance (LastSeen its last beat); watchers see every change once,
// in order.
func runPresence(t *testing.T, newTable func(t *testing.T) routes.Table) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tb := newTable(t)
	changes := make(chan domain.Presence, 64)
	wait, err := tb.WatchPresence(ctx, func(p domain.Presence) { changes <- p }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()
	next := func(what string) domain.Presence {
		t.Helper()
		select {
		case p := <-changes:
			return p
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no presence change", what)
			return domain.Presence{}
		}
	}
	none := func(what string) {
		t.Helper()
		select {
		case p := <-changes:
			t.Fatalf("%s: unexpected change %+v", what, p)
		case <-time.After(100 * time.Millisecond):
		}
	}
	ms := func() time.Time { return time.Now().Truncate(time.Millisecond) }
	state := func(a domain.AccountID) domain.Presence {
		t.Helper()
		got, err := tb.Presence(ctx, []domain.AccountID{a})
		if err != nil || len(got) != 1 || got[0].Account != a {
			t.Fatalf("presence of %s: %v %v", a, got, err)
		}
		return got[0]
	}
	if p := state("alice"); p.Online || !p.LastSeen.IsZero() {
		t.Errorf("never seen: %+v, want offline without lastSeen", p)
	}
	mustBeat(t, tb, "a:1")
	mustBeat(t, tb, "b:1")
	phone, laptop := domain.NewUniqueID("alice", "phone"), domain.NewUniqueID("alice", "laptop")
	if _, err := tb.Claim(ctx, phone, "a:1", false); err != nil {
		t.Fatal(err)
	}
	if p := next("first device"); p.Account != "alice" || !p.Online {
		t.Fatalf("first device: %+v", p)
	}
	if _, err := tb.Claim(ctx, laptop, "b:1", false); err != nil {
		t.Fatal(err)
	}
	_ = tb.Release(ctx, phone, "a:1")
	none("second device, then the first one leaves")
	if p := state("alice"); !p.Online {
		t.Errorf("with one device left: %+v", p)
	}
	before := ms()
	_ = tb.Release(ctx, laptop, "b:1")
	p := next("last device leaves")
	if p.Online || p.LastSeen.Before(before) || p.LastSeen.After(time.Now()) {
		t.Fatalf("last device leaves: %+v, want offline seen since %v", p, before)
	}
	if got := state("alice"); got.Online || !got.LastSeen.Equal(p.LastSeen) {
		t.Errorf("state %+v, change %+v", got, p)
	}

	// a:1 dies: its devices are released as of its last beat; b:1's stay.
	if _, err := tb.Claim(ctx, phone, "a:1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Claim(ctx, domain.NewUniqueID("bob", "phone"), "b:1", false); err != nil {
		t.Fatal(err)
	}
	next("alice back")
	next("bob arrives")
	mustBeat(t, tb, "a:1")
	if n, err := tb.Reap(ctx); err != nil || n != 0 {
		t.Fatalf("reap with every instance alive: %d %v", n, err)
	}
	none("reap with every instance alive")
	time.Sleep(20 * time.Millisecond)
	forgotten := ms()
	// As if its liveness lapsed; a clean shutdown's Forget also marks
	// its end as its last sign of life, so lastSeen is then.
	if err := tb.Forget(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	if n, err := tb.Reap(ctx); err != nil || n != 1 {
		t.Fatalf("reap of a dead instance: %d %v, want 1 route", n, err)
	}
	p = next("reaped")
	if p.Account != "alice" || p.Online || p.LastSeen.Before(forgotten) || p.LastSeen.After(time.Now()) {
		t.Fatalf("reaped: %+v, want alice offline when a:1 was forgotten, %v", p, forgotten)
	}
	if got, _ := tb.Lookup(ctx, []domain.UniqueID{phone}); len(got) != 0 {
		t.Errorf("a reaped route is still found: %v", got)
	}
	assertOnline(t, tb, "alice")
	if n, err := tb.Reap(ctx); err != nil || n != 0 {
		t.Errorf("second reap: %d %v", n, err)
	}
	if p := state("bob"); !p.Online {
		t.Errorf("bob on a live instance: %+v", p)
	}
	// A restarted instance forsakes what its previous run left behind.
	if n, err := tb.Forsake(ctx, "b:1"); err != nil || n != 1 {
		t.Fatalf("forsake: %d %v", n, err)
	}
	if p := next("forsaken"); p.Account != "bob" || p.Online {
		t.Fatalf("forsaken: %+v", p)
	}
	none("after the forsaking")
}

func mustBeat(t *testing.T, tb routes.Table, instance string) {
	t.Helper()
	if err := tb.Beat(context.Background(), instance); err != nil {
		t.Fatal(err)
	}
}

func assertOnline(t *testing.T, tb routes.Table, a domain.AccountID, want ...domain.UniqueID) {
	t.Helper()
	got, err := tb.Online(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	if len(got) != len(want) {
		t.Fatalf("online %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("online %v, want %v", got, want)
		}
	}
}
