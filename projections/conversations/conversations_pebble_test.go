package conversations_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// BenchmarkPebbleApplyBatch applies the index as a single node's reader
// does: one message a batch, with its conversation's state primed first,
// as the predecessors do, to a store on disk. accounts=2000 sends between
// two of 2,000 accounts at random, so that most conversations are new (as
// in BenchmarkEmbeddedReader); accounts=100 among 100, so that the same
// 4,950 conversations come again and again (as with parley-bench's 100
// connections).
func BenchmarkPebbleApplyBatch(b *testing.B) {
	for _, accounts := range []int{2000, 100} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			db := pebbletest.OpenOnDisk(b)
			ix := conversations.NewPebble(db, conversations.Name)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			var offset int64
			b.ReportAllocs()
			for b.Loop() {
				i, j := rng.IntN(accounts), rng.IntN(accounts-1)
				if j >= i {
					j++
				}
				from, to := fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", j)
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
		})
	}
}

// BenchmarkPebbleList lists the first page of an account with n
// conversations: every list looks at all of them (two lookups each), so
// its cost grows with n, and ns/conversation is what a read of the read
// budget should pay for (api.ConversationsPerRead).
func BenchmarkPebbleList(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("conversations=%d", n), func(b *testing.B) {
			db := pebbletest.OpenOnDisk(b)
			ix := conversations.NewPebble(db, conversations.Name)
			ctx := context.Background()
			batch := make([]projections.Record, 0, n)
			for i := range n {
				c := domain.DirectConversation("alice", domain.AccountID(fmt.Sprintf("u%d", i)))
				batch = append(batch, projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(),
					Conversation: c.String(), SenderAccount: "alice", SenderDevice: "d", Kind: "text", Body: "hi", ServerTime: int64(1 + i)},
					Position: events.Position{Partition: 0, Offset: int64(i + 1)}, MsgID: domain.MsgID(1<<48 | (i + 1))})
			}
			if err := ix.ApplyBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				page, err := ix.List(ctx, "alice", nil, conversations.Query{Limit: 1000})
				if err != nil || page.Considered != n {
					b.Fatalf("%+v %v", page.Considered, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conversation")
		})
	}
	// Groups without a message, as others may add an account to: not
	// counted, and answered by the filter in memory.
	b.Run("emptyGroups=10000", func(b *testing.B) {
		db := pebbletest.OpenOnDisk(b)
		ix := conversations.NewPebble(db, conversations.Name)
		ctx := context.Background()
		if err := ix.LoadFilter(ctx); err != nil {
			b.Fatal(err)
		}
		groups := make([]domain.GroupID, 10000)
		for i := range groups {
			groups[i] = domain.GroupID(fmt.Sprintf("g%031d", i))
		}
		b.ReportAllocs()
		for b.Loop() {
			page, err := ix.List(ctx, "alice", groups, conversations.Query{Limit: 1000})
			if err != nil || page.Considered != 0 {
				b.Fatalf("%+v %v", page.Considered, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(groups)), "ns/group")
	})
}

// The embedded index holds the states and cursors its batches wrote and
// reads them there: counts and cursors stay what the memory index says,
// batch after batch of the same conversations, through a read that moves a
// cursor back to an older message's count and an erasure that deletes one.
func TestPebbleHeldStatesStayTrue(t *testing.T) {
	ctx := context.Background()
	ab := "d:alice:bob"
	var off int64
	at := func() (events.Position, domain.MsgID) {
		off++
		return events.Position{Partition: 0, Offset: off}, domain.MsgID(1<<48 | off)
	}
	send := func(from string) projections.Record {
		pos, id := at()
		return projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(),
			Conversation: ab, SenderAccount: from, SenderDevice: "d", Kind: "text", Body: "hi", ServerTime: off},
			Position: pos, MsgID: id}
	}
	read := func(who string, upTo int64) projections.Record {
		pos, id := at()
		return projections.Record{Event: events.ConversationRead{Conversation: ab, Account: who, Device: "d",
			MsgID: 1<<48 | upTo, At: off}, Position: pos, MsgID: id}
	}
	erase := func(who string) projections.Record {
		pos, id := at()
		return projections.Record{Event: events.AccountErased{Account: who, ErasedAt: off, Partitions: 1}, Position: pos, MsgID: id}
	}
	// Batches, applied in turn; each is built when its turn comes, so
	// that offsets follow the log.
	batches := []func() []projections.Record{
		func() []projections.Record { return []projections.Record{send("alice"), send("bob")} },
		func() []projections.Record { return []projections.Record{send("alice")} },
		func() []projections.Record { return []projections.Record{read("bob", 3)} },
		func() []projections.Record { return []projections.Record{send("alice"), send("alice")} },
		func() []projections.Record { return []projections.Record{read("bob", 4)} }, // an older message than the newest
		func() []projections.Record { return []projections.Record{send("bob")} },
		func() []projections.Record { return []projections.Record{erase("bob")} },
		func() []projections.Record { return []projections.Record{send("alice"), send("bob")} },
		func() []projections.Record { return []projections.Record{send("alice"), erase("alice"), send("alice")} },
		func() []projections.Record { return []projections.Record{read("alice", 9)} },
	}
	mem := conversations.NewMemory()
	pb := conversations.NewPebble(pebbletest.Open(t), conversations.Name)
	c, err := domain.ParseConversationID(ab)
	if err != nil {
		t.Fatal(err)
	}
	for i, next := range batches {
		recs := next()
		for name, ix := range map[string]projections.Batcher{"memory": mem, "pebble": pb} {
			if err := ix.ApplyBatch(ctx, recs); err != nil {
				t.Fatalf("batch %d, %s: %v", i, name, err)
			}
		}
		sameStates(t, fmt.Sprint("after batch ", i), pb, mem, ab)
	}
	// Erased, bob's cursor counts from nothing, but not his own messages:
	// alice's seven are unread.
	if st, err := mem.ReadState(ctx, c, "bob"); err != nil || st.Unread != 7 || st.ReadMsgID != 0 {
		t.Errorf("bob's state in the memory index %+v (%v), want nothing read and 7 unread", st, err)
	}
}

// An index reopened over a store loads its filter of conversations from
// what the store holds: a conversation it has goes on counting.
func TestPebbleFilterLoadsWhatTheStoreHolds(t *testing.T) {
	ctx := context.Background()
	db := pebbletest.Open(t)
	c := domain.DirectConversation("alice", "bob")
	rec := func(offset int64) projections.Record {
		return projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(),
			Conversation: c.String(), SenderAccount: "alice", SenderDevice: "d", Kind: "text", Body: "hi", ServerTime: 1},
			Position: events.Position{Partition: 0, Offset: offset}, MsgID: domain.MsgID(1<<48 | offset)}
	}
	if err := conversations.NewPebble(db, conversations.Name).ApplyBatch(ctx, []projections.Record{rec(1)}); err != nil {
		t.Fatal(err)
	}
	ix := conversations.NewPebble(db, conversations.Name)
	if err := ix.LoadFilter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ix.ApplyBatch(ctx, []projections.Record{rec(2)}); err != nil {
		t.Fatal(err)
	}
	st, err := ix.ReadState(ctx, c, "bob")
	if err != nil || st.Unread != 2 || st.Latest != 1<<48|2 {
		t.Fatalf("bob's ReadState = %+v, %v; want 2 unread up to the second message", st, err)
	}
}
