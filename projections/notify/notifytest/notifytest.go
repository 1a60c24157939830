// Package notifytest is the contract suite of notify.Mutes: every adapter
// passes it.
package notifytest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/notify"
)

// Run runs the suite; open returns an empty Mutes for each case.
func Run(t *testing.T, open func(t *testing.T) notify.Mutes) {
	ctx := context.Background()
	conv := func(a, b string) domain.ConversationID {
		return domain.DirectConversation(domain.AccountID(a), domain.AccountID(b))
	}
	ab, ac := conv("alice", "bob"), conv("alice", "carol")
	later := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	cases := []struct {
		name string
		run  func(t *testing.T, m notify.Mutes)
	}{
		{"no mute", func(t *testing.T, m notify.Mutes) {
			if _, ok, err := m.MutedUntil(ctx, "alice", ab); err != nil || ok {
				t.Fatalf("MutedUntil of nothing: ok %v, err %v", ok, err)
			}
		}},
		{"forever and until", func(t *testing.T, m notify.Mutes) {
			must(t, m.Mute(ctx, "alice", ab, time.Time{}))
			must(t, m.Mute(ctx, "alice", ac, later))
			if u, ok, err := m.MutedUntil(ctx, "alice", ab); err != nil || !ok || !u.IsZero() {
				t.Fatalf("forever: %v %v %v", u, ok, err)
			}
			if u, ok, err := m.MutedUntil(ctx, "alice", ac); err != nil || !ok || !u.Equal(later) {
				t.Fatalf("until: %v %v %v, want %v", u, ok, err, later)
			}
			if _, ok, _ := m.MutedUntil(ctx, "bob", ab); ok {
				t.Fatal("bob's mute of alice's conversation is his own")
			}
		}},
		{"replace and unmute", func(t *testing.T, m notify.Mutes) {
			must(t, m.Mute(ctx, "alice", ab, time.Time{}))
			must(t, m.Mute(ctx, "alice", ab, later))
			if u, _, _ := m.MutedUntil(ctx, "alice", ab); !u.Equal(later) {
				t.Fatalf("after replacing: %v, want %v", u, later)
			}
			must(t, m.Unmute(ctx, "alice", ab))
			must(t, m.Unmute(ctx, "alice", ab)) // nothing to remove: fine
			if _, ok, _ := m.MutedUntil(ctx, "alice", ab); ok {
				t.Fatal("still muted after unmute")
			}
		}},
		{"mutes of an account in force", func(t *testing.T, m notify.Mutes) {
			must(t, m.Mute(ctx, "alice", ab, later))
			must(t, m.Mute(ctx, "alice", ac, time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())))
			must(t, m.Mute(ctx, "bob", ab, time.Time{}))
			got, err := m.MutesOf(ctx, "alice", time.Now())
			must(t, err)
			if len(got) != 1 || !got[ab].Equal(later) {
				t.Fatalf("alice's mutes: %v, want only %s until %v", got, ab, later)
			}
		}},
		{"a mute drops the account's ended mutes", func(t *testing.T, m notify.Mutes) {
			past := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
			for i := range 50 {
				must(t, m.Mute(ctx, "alice", conv("alice", fmt.Sprintf("e%d", i)), past))
			}
			must(t, m.Mute(ctx, "bob", ab, past))
			must(t, m.Mute(ctx, "alice", ab, later))
			for i := range 50 {
				if _, ok, err := m.MutedUntil(ctx, "alice", conv("alice", fmt.Sprintf("e%d", i))); err != nil || ok {
					t.Fatalf("alice's ended mute e%d is still stored (%v)", i, err)
				}
			}
			if u, ok, err := m.MutedUntil(ctx, "alice", ab); err != nil || !ok || !u.Equal(later) {
				t.Fatalf("the new mute: %v %v %v", u, ok, err)
			}
			if _, ok, _ := m.MutedUntil(ctx, "bob", ab); !ok {
				t.Fatal("another account's ended mute went with alice's")
			}
		}},
		{"unmute all of an account", func(t *testing.T, m notify.Mutes) {
			must(t, m.Mute(ctx, "alice", ab, time.Time{}))
			must(t, m.Mute(ctx, "alice", ac, time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())))
			must(t, m.Mute(ctx, "bob", ab, later))
			must(t, m.Mute(ctx, "alice0", ab, later)) // a neighbour of alice's keys
			if had, err := m.UnmuteAll(ctx, "alice"); err != nil || !had {
				t.Fatalf("UnmuteAll of alice: %v, %v; want she had some", had, err)
			}
			if had, err := m.UnmuteAll(ctx, "nobody"); err != nil || had {
				t.Fatalf("UnmuteAll of nobody: %v, %v; want none", had, err)
			}
			for _, c := range []domain.ConversationID{ab, ac} {
				if _, ok, err := m.MutedUntil(ctx, "alice", c); err != nil || ok {
					t.Fatalf("alice's mute of %s after UnmuteAll: %v %v", c, ok, err)
				}
			}
			for _, a := range []domain.AccountID{"bob", "alice0"} {
				if u, ok, err := m.MutedUntil(ctx, a, ab); err != nil || !ok || !u.Equal(later) {
					t.Fatalf("%s's mute went with alice's: %v %v %v", a, u, ok, err)
				}
			}
			must(t, m.Mute(ctx, "alice", ab, later))
		}},
		{"bounded per account", func(t *testing.T, m notify.Mutes) {
			// An expired mute does not count.
			must(t, m.Mute(ctx, "alice", conv("alice", "old"), time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())))
			for i := range notify.MaxMutes {
				must(t, m.Mute(ctx, "alice", conv("alice", fmt.Sprintf("p%d", i)), time.Time{}))
			}
			if err := m.Mute(ctx, "alice", conv("alice", "one-more"), time.Time{}); !errors.Is(err, domain.ErrTooLarge) {
				t.Fatalf("mute past the bound: %v, want domain.ErrTooLarge", err)
			}
			// Changing one already muted, or another account, is fine.
			must(t, m.Mute(ctx, "alice", conv("alice", "p0"), later))
			must(t, m.Mute(ctx, "bob", ab, time.Time{}))
			must(t, m.Unmute(ctx, "alice", conv("alice", "p1")))
			must(t, m.Mute(ctx, "alice", conv("alice", "one-more"), time.Time{}))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
