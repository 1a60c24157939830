// Package routestest is the contract every routes.Table adapter passes.
package routestest

import (
	"context"
	"errors"
	"sort"
	"testing"

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
