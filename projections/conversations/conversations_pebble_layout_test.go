package conversations_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/conversations/conversationstest"
)

// layoutLog builds records of a log whose partitions are counted apart,
// the way the runner hands them over.
type layoutLog struct {
	partitions int32
	offsets    map[int32]int64
	next       map[string]domain.MsgID
}

func newLayoutLog(partitions int32) *layoutLog {
	return &layoutLog{partitions: partitions, offsets: map[int32]int64{}, next: map[string]domain.MsgID{}}
}

func (l *layoutLog) pos(conv string) events.Position {
	p := events.PartitionFor(conv, l.partitions)
	l.offsets[p]++
	return events.Position{Partition: p, Offset: l.offsets[p]}
}

// send is a message of from in conv. msgids step by 0x2F so that many of
// their bytes are '/', which keys must tell from their separators.
func (l *layoutLog) send(conv, from string) projections.Record {
	if l.next[conv] == 0 {
		l.next[conv] = 1 << 48
	}
	l.next[conv] += 0x2F
	return projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(),
		Conversation: conv, SenderAccount: from, SenderDevice: "d", Kind: "text", Body: "hi", ServerTime: int64(l.next[conv])},
		Position: l.pos(conv), MsgID: l.next[conv]}
}

// read moves who's cursor in conv back from the newest message by back
// messages.
func (l *layoutLog) read(conv, who string, back int) projections.Record {
	id := l.next[conv] - domain.MsgID(back*0x2F)
	return projections.Record{Event: events.ConversationRead{Conversation: conv, Account: who, Device: "d", MsgID: int64(id), At: 1},
		Position: l.pos(conv), MsgID: l.next[conv] + 1}
}

// erase is who's erasure as partition p reads it.
func (l *layoutLog) erase(who string, p int32) projections.Record {
	l.offsets[p]++
	return projections.Record{Event: events.AccountErased{Account: who, ErasedAt: 1, Partitions: l.partitions},
		Position: events.Position{Partition: p, Offset: l.offsets[p]}, MsgID: 1}
}

var layoutConvs = []string{"d:alice:bob", "d:alice:carol", "d:bob:carol", "g:team", "g:other"}

// traffic is rounds of messages and reads in every conversation of
// layoutConvs, batched per partition.
func (l *layoutLog) traffic(rounds int) [][]projections.Record {
	byPart := map[int32][]projections.Record{}
	for i := range rounds {
		for _, conv := range layoutConvs {
			who := []string{"alice", "bob", "carol"}[i%3]
			if c, _ := domain.ParseConversationID(conv); c.Kind() == domain.KindDirect {
				a, b := c.Accounts()
				who = string([]domain.AccountID{a, b}[i%2])
			}
			r := l.send(conv, who)
			byPart[r.Position.Partition] = append(byPart[r.Position.Partition], r)
			if i%4 == 3 {
				r := l.read(conv, []string{"alice", "bob", "carol"}[(i/4)%3], i%3)
				byPart[r.Position.Partition] = append(byPart[r.Position.Partition], r)
			}
		}
	}
	var batches [][]projections.Record
	for p := range l.partitions {
		batches = append(batches, byPart[p])
	}
	return batches
}

// sameStates fails t unless got reads every account's state in every
// conversation of convs as want does.
func sameStates(t *testing.T, what string, got, want conversations.Index, convs ...string) {
	t.Helper()
	ctx := context.Background()
	for _, conv := range convs {
		c, err := domain.ParseConversationID(conv)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []domain.AccountID{"alice", "bob", "carol"} {
			w, err := want.ReadState(ctx, c, a)
			if err != nil {
				t.Fatal(err)
			}
			g, err := got.ReadState(ctx, c, a)
			if err != nil {
				t.Fatal(err)
			}
			if g != w {
				t.Errorf("%s: %s's state in %s is %+v, want %+v", what, a, conv, g, w)
			}
		}
	}
}

func applyAll(t *testing.T, batches [][]projections.Record, ixs ...projections.Batcher) {
	t.Helper()
	for _, recs := range batches {
		for _, ix := range ixs {
			if err := ix.ApplyBatch(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// An erasure deletes the account's cursor in every conversation of its
// partition, whatever lies between them in the store, and no other:
// with the keys in the memtable, and in tables (whose iterators reuse
// the memory of the keys they return).
func TestPebbleEraseFindsEveryCursor(t *testing.T) {
	for _, flushed := range []bool{false, true} {
		t.Run(fmt.Sprint("flushed=", flushed), func(t *testing.T) {
			l := newLayoutLog(2)
			mem := conversations.NewMemory()
			db := pebbletest.Open(t)
			pb := conversations.NewPebble(db, conversations.Name)
			applyAll(t, l.traffic(40), mem, pb)
			if flushed {
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			sameStates(t, "before the erasure", pb, mem, layoutConvs...)
			for p := range int32(2) {
				applyAll(t, [][]projections.Record{{l.erase("alice", p)}}, mem, pb)
				sameStates(t, fmt.Sprintf("after partition %d erased alice", p), pb, mem, layoutConvs...)
			}
			applyAll(t, l.traffic(5), mem, pb)
			sameStates(t, "after more traffic", pb, mem, layoutConvs...)
		})
	}
}

// An index of layout 1 reads the same once upgraded, and goes on from
// there; an upgrade stopped halfway goes on the next time.
func TestPebbleUpgradeFromLayout1(t *testing.T) {
	ctx := context.Background()
	l := newLayoutLog(1)
	mem := conversations.NewMemory()
	db := pebbletest.Open(t)
	if moved, err := conversations.UpgradePebble(ctx, db); err != nil || moved != 0 {
		t.Fatalf("upgrading an empty store moved %d keys (%v), want none", moved, err)
	}
	applyAll(t, l.traffic(600), mem, conversations.NewPebble(db, conversations.Name))
	old := conversationstest.ToLayout1(t, db)
	if old < 4096 {
		t.Fatalf("the test needs more than one batch of keys, has %d", old)
	}
	team := domain.GroupConversation("team")
	want, err := mem.ReadState(ctx, team, "alice")
	if err != nil || want.ReadMsgID == 0 {
		t.Fatalf("alice read nothing in %s (%v): the test needs a cursor", team, err)
	}
	if st, err := conversations.NewPebble(db, conversations.Name).ReadState(ctx, team, "alice"); err != nil || st.ReadMsgID != 0 {
		t.Fatalf("the index reads layout 1 without an upgrade: alice's state %+v (%v)", st, err)
	}

	// Stopped after its first batch.
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	moved, err := conversations.UpgradePebble(stopped, db)
	if !errors.Is(err, context.Canceled) || moved == 0 || moved >= old {
		t.Fatalf("a stopped upgrade moved %d of %d keys (%v), want one batch and the context's error", moved, old, err)
	}
	rest, err := conversations.UpgradePebble(ctx, db)
	if err != nil || moved+rest != old {
		t.Fatalf("upgrades moved %d and %d keys (%v), want %d in all", moved, rest, err, old)
	}
	if again, err := conversations.UpgradePebble(ctx, db); err != nil || again != 0 {
		t.Fatalf("upgrading again moved %d keys (%v), want none", again, err)
	}
	pb := conversations.NewPebble(db, conversations.Name)
	sameStates(t, "upgraded", pb, mem, layoutConvs...)
	applyAll(t, l.traffic(10), mem, pb)
	sameStates(t, "upgraded, then more traffic", pb, mem, layoutConvs...)
}

// A layout this Parley does not know is refused, not read.
func TestPebbleUnknownLayoutRefused(t *testing.T) {
	db := pebbletest.Open(t)
	if err := db.Set([]byte("cv"), []byte("3"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := conversations.UpgradePebble(context.Background(), db); err == nil {
		t.Fatal("an unknown layout was accepted")
	}
}

// BenchmarkPebbleUpgrade moves an index of layout 1 on disk: 100,000
// messages between 2,000 accounts (about 300,000 keys). ns/key is the
// time per key moved.
func BenchmarkPebbleUpgrade(b *testing.B) {
	keys := 0
	for b.Loop() {
		b.StopTimer()
		db := pebbletest.OpenOnDisk(b)
		ix := conversations.NewPebble(db, conversations.Name)
		rng := rand.New(rand.NewPCG(1, 2))
		l := newLayoutLog(1)
		var recs []projections.Record
		for range 100_000 {
			i, j := rng.IntN(2000), rng.IntN(1999)
			if j >= i {
				j++
			}
			from, to := domain.AccountID(fmt.Sprint("u", i)), domain.AccountID(fmt.Sprint("u", j))
			recs = append(recs, l.send(domain.DirectConversation(from, to).String(), string(from)))
			if len(recs) == 500 {
				if err := ix.ApplyBatch(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
				recs = recs[:0]
			}
		}
		old := conversationstest.ToLayout1(b, db)
		b.StartTimer()
		moved, err := conversations.UpgradePebble(context.Background(), db)
		if err != nil || moved != old {
			b.Fatalf("moved %d of %d keys (%v)", moved, old, err)
		}
		keys += moved
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(keys), "ns/key")
}
