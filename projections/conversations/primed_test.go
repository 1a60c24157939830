package conversations_test

import (
	"context"
	"testing"

	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// What LatestPrimed read serves the index's next batch of the
// conversation and that batch only: counts stay exact whether or not the
// predecessors asked before a batch.
func TestPrimedStateServesOneBatch(t *testing.T) {
	ctx := context.Background()
	ix := conversations.NewPebble(pebbletest.Open(t), "conversations")
	ab := conv(t, "d:a:b")
	unread := func(want int64) {
		t.Helper()
		page, err := ix.List(ctx, "b", nil, conversations.Query{Limit: 10})
		list := page.Entries
		if err != nil || len(list) != 1 || list[0].Unread != want {
			t.Fatalf("b's list %+v (%v), want one conversation with %d unread", list, err, want)
		}
	}
	prime := func(wantLatest int64, wantFound bool) {
		t.Helper()
		id, found, err := ix.LatestPrimed(ctx, ab)
		if err != nil || found != wantFound || (found && int64(id) != int64(msg(t, "d:a:b", wantLatest).MsgID)) {
			t.Fatalf("LatestPrimed = %d %v (%v)", id, found, err)
		}
	}
	apply := func(offset int64) {
		t.Helper()
		if err := ix.ApplyBatch(ctx, []projections.Record{msg(t, "d:a:b", offset)}); err != nil {
			t.Fatal(err)
		}
	}
	prime(0, false)
	apply(1)
	unread(1)
	apply(2) // not primed: read afresh, not what was primed before the first
	unread(2)
	prime(2, true)
	apply(3)
	unread(3)
}
