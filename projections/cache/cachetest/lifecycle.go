package cachetest

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/cache"
)

func edit(m domain.Message, rev domain.MsgID, body string, at time.Time) domain.Amendment {
	return domain.Amendment{Conversation: m.Conversation, MsgID: m.MsgID, By: m.Sender, Body: body,
		ClientMsgID: "e", At: at, Revision: rev}
}

func deletion(m domain.Message, rev domain.MsgID, at time.Time) domain.Amendment {
	return domain.Amendment{Conversation: m.Conversation, MsgID: m.MsgID, By: m.Sender, Delete: true, At: at, Revision: rev}
}

// runLifecycle: edits and deletions change the cached message in place
// (latest body, or a tombstone that keeps its msgid), idempotently, and
// never add a message the cache does not hold.
func runLifecycle(t *testing.T, newCache NewCache) {
	amend := func(t *testing.T, c cache.Cache, as ...domain.Amendment) {
		t.Helper()
		for _, a := range as {
			if err := c.Amend(t.Context(), a); err != nil {
				t.Fatalf("Amend(%d): %v", a.MsgID, err)
			}
		}
	}
	setup := func(t *testing.T) (cache.Cache, domain.Message, domain.Message) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		m1, m2 := msgAt(ab, id(10), t0.Add(-time.Hour)), msgAt(ab, id(11), t0.Add(-time.Hour))
		for _, m := range []domain.Message{m1, m2} {
			if err := c.Add(t.Context(), m, id(9)); err != nil {
				t.Fatal(err)
			}
		}
		return c, m1, m2
	}
	page := func(t *testing.T, c cache.Cache, want ...domain.Message) {
		t.Helper()
		ms, _, covered, err := c.After(t.Context(), ab, id(9), 10)
		if err != nil || !covered || len(ms) != len(want) {
			t.Fatalf("After = %v covered %v err %v, want %d messages", msgIDs(ms), covered, err, len(want))
		}
		for i := range want {
			sameMessage(t, ms[i], want[i])
		}
	}
	t.Run("edit", func(t *testing.T) {
		c, m1, m2 := setup(t)
		first, second := edit(m1, id(12), "first edit", t0), edit(m1, id(14), "second edit", t0.Add(time.Second))
		edited := func(a domain.Amendment) domain.Message {
			m := m1
			m.Body, m.EditedAt, m.Revision = a.Body, a.At, a.Revision
			return m
		}
		amend(t, c, first)
		page(t, c, edited(first), m2)
		amend(t, c, second, first) // the earlier edit again changes nothing
		page(t, c, edited(second), m2)
		if err := c.Add(t.Context(), m1, id(9)); err != nil { // a replayed send
			t.Fatal(err)
		}
		page(t, c, edited(second), m2)
	})
	t.Run("delete", func(t *testing.T) {
		c, m1, m2 := setup(t)
		tomb := m2
		tomb.Body, tomb.Deleted, tomb.Revision = "", true, id(13)
		amend(t, c, edit(m2, id(12), "edited", t0), deletion(m2, id(13), t0))
		page(t, c, m1, tomb)
		amend(t, c, deletion(m2, id(15), t0), edit(m2, id(16), "back", t0), edit(m2, id(12), "edited", t0))
		if err := c.Add(t.Context(), m2, id(9)); err != nil {
			t.Fatal(err)
		}
		page(t, c, m1, tomb)
	})
	t.Run("what the cache does not hold", func(t *testing.T) {
		c, m1, m2 := setup(t)
		ghost := msgAt(ab, id(20), t0)
		below := msgAt(ab, id(5), t0)
		other := msgAt(g1, id(10), t0)
		amend(t, c, edit(ghost, id(21), "x", t0), deletion(below, id(22), t0), edit(other, id(23), "y", t0))
		page(t, c, m1, m2)
		check(t, c, read{conv: g1, after: 0, wantCovered: false})
	})
}

// runErase: an erasure tombstones the cached messages of the account up
// to its time, in the conversations it names; doing it again changes
// nothing.
func runErase(t *testing.T, newCache NewCache) {
	clk := &Clock{now: t0}
	c := newCache(t, clk.Now)
	a1, a2 := msgAt(ab, id(10), t0.Add(-2*time.Hour)), msgAt(ab, id(12), t0.Add(-time.Minute))
	b1 := msgAt(ab, id(11), t0.Add(-2*time.Hour))
	b1.Sender = domain.Sender{Account: "bob", Device: "web"}
	for _, m := range []domain.Message{a1, b1, a2} {
		if err := c.Add(t.Context(), m, id(9)); err != nil {
			t.Fatal(err)
		}
	}
	e := domain.Erasure{Account: a1.Sender.Account, At: t0.Add(-time.Hour)}
	for round := range 2 {
		if err := c.Erase(t.Context(), e, func(conv domain.ConversationID) bool { return conv == ab }); err != nil {
			t.Fatal(err)
		}
		ms, _, covered, err := c.After(t.Context(), ab, id(9), 10)
		if err != nil || !covered || len(ms) != 3 {
			t.Fatalf("round %d: After = %v covered %v err %v", round, msgIDs(ms), covered, err)
		}
		tomb := a1
		tomb.Body, tomb.Deleted = "", true
		sameMessage(t, ms[0], tomb)
		sameMessage(t, ms[1], b1)
		sameMessage(t, ms[2], a2) // sent after the erasure's time
	}
}
