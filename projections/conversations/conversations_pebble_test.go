package conversations_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// BenchmarkPebbleApplyBatch applies the index as a single node's reader
// does: one message a batch, each between two of 2,000 accounts at
// random (so most conversations are new, as in BenchmarkEmbeddedReader),
// with its conversation's state primed first, as the predecessors do, to
// a store on disk.
func BenchmarkPebbleApplyBatch(b *testing.B) {
	db, err := parleypebble.Open(parleypebble.Config{Dir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ix := conversations.NewPebble(db, conversations.Name)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var offset int64
	b.ReportAllocs()
	for b.Loop() {
		from, to := fmt.Sprintf("u%d", rng.IntN(2000)), fmt.Sprintf("u%d", rng.IntN(2001)+2000)
		c := domain.DirectConversation(domain.AccountID(from), domain.AccountID(to))
		if _, _, err := ix.LatestPrimed(ctx, c); err != nil {
			b.Fatal(err)
		}
		offset++
		rec := projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(),
			Conversation: c.String(), SenderAccount: from, SenderDevice: "d", Kind: "text", Body: "hi", ServerTime: 1},
			Position: events.Position{Partition: 0, Offset: offset}, MsgID: domain.MsgID(1<<48 | offset)}
		if err := ix.ApplyBatch(ctx, []projections.Record{rec}); err != nil {
			b.Fatal(err)
		}
	}
}
