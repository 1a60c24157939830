// Package keystest is the contract suite every keys.Store passes.
package keystest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/keys"
)

// Run runs the suite; open returns an empty store of the test's own.
func Run(t *testing.T, open func(t *testing.T) keys.Store) {
	ctx := context.Background()
	t.Run("current is stable per account", func(t *testing.T) {
		s := open(t)
		a1, err := s.Current(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		a2, err := s.Current(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Current(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if a1.ID != a2.ID || string(a1.Secret) != string(a2.Secret) {
			t.Errorf("alice's key changed: %s then %s", a1.ID, a2.ID)
		}
		if a1.ID == b.ID || string(a1.Secret) == string(b.Secret) {
			t.Errorf("alice and bob share a key")
		}
		if len(a1.Secret) != events.KeyBytes || a1.Account != "alice" || len(a1.ID) != 32 {
			t.Errorf("key = %s of %s with %d bytes", a1.ID, a1.Account, len(a1.Secret))
		}
		got, err := s.Key(ctx, a1.ID)
		if err != nil || got.Account != "alice" || string(got.Secret) != string(a1.Secret) {
			t.Errorf("Key(%s) = %s of %s, %v", a1.ID, got.ID, got.Account, err)
		}
	})
	t.Run("concurrent first keys agree", func(t *testing.T) {
		s := open(t)
		ids := make([]string, 8)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() {
				k, err := s.Current(ctx, "carol")
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = k.ID
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("concurrent Current gave keys %v", ids)
			}
		}
	})
	t.Run("concurrent first keys of many accounts", func(t *testing.T) {
		s := open(t)
		const accounts, callers = 16, 4
		got := make([][]keys.Key, accounts)
		var wg sync.WaitGroup
		for a := range accounts {
			got[a] = make([]keys.Key, callers)
			for c := range callers {
				wg.Go(func() {
					k, err := s.Current(ctx, fmt.Sprintf("dave%d", a))
					if err != nil {
						t.Error(err)
					}
					got[a][c] = k
				})
			}
		}
		wg.Wait()
		seen := map[string]int{}
		for a, ks := range got {
			for _, k := range ks {
				if k.ID != ks[0].ID || k.Account != fmt.Sprintf("dave%d", a) {
					t.Fatalf("dave%d got keys %s and %s (of %s)", a, ks[0].ID, k.ID, k.Account)
				}
			}
			if b, ok := seen[ks[0].ID]; ok {
				t.Fatalf("dave%d and dave%d share key %s", b, a, ks[0].ID)
			}
			seen[ks[0].ID] = a
			if again, err := s.Current(ctx, fmt.Sprintf("dave%d", a)); err != nil || again.ID != ks[0].ID {
				t.Errorf("dave%d's key afterwards = %s (%v), want %s", a, again.ID, err, ks[0].ID)
			}
		}
	})
	t.Run("unknown key is destroyed", func(t *testing.T) {
		s := open(t)
		if _, err := s.Key(ctx, "00000000000000000000000000000000"); !errors.Is(err, events.ErrKeyDestroyed) {
			t.Errorf("Key(unknown) err = %v, want ErrKeyDestroyed", err)
		}
	})
	t.Run("destroy", func(t *testing.T) {
		s := open(t)
		a, _ := s.Current(ctx, "alice")
		b, _ := s.Current(ctx, "bob")
		ids, err := s.Destroy(ctx, "alice")
		if err != nil || len(ids) != 1 || ids[0] != a.ID {
			t.Fatalf("Destroy = %v, %v; want [%s]", ids, err, a.ID)
		}
		if _, err := s.Key(ctx, a.ID); !errors.Is(err, events.ErrKeyDestroyed) {
			t.Errorf("Key(destroyed) err = %v, want ErrKeyDestroyed", err)
		}
		if got, err := s.Key(ctx, b.ID); err != nil || got.Account != "bob" {
			t.Errorf("bob's key after alice's erasure: %v", err)
		}
		ids, err = s.Destroy(ctx, "alice")
		if err != nil || len(ids) != 0 {
			t.Errorf("second Destroy = %v, %v; want none", ids, err)
		}
		if ids, err := s.Destroy(ctx, "nobody"); err != nil || len(ids) != 0 {
			t.Errorf("Destroy(unknown) = %v, %v; want none", ids, err)
		}
		fresh, err := s.Current(ctx, "alice")
		if err != nil || fresh.ID == a.ID {
			t.Errorf("alice's key after erasure = %s (%v), want a new one", fresh.ID, err)
		}
	})
}
