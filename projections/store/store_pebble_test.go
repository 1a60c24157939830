package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/store/storetest"
)

func TestPebbleContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewPebble(pebbletest.Open(t), store.Name) })
}

// With its filters of held keys loaded (client message ids, message ids,
// floors), the history answers lookups of missing ones from memory: the
// contract holds all the same.
func TestPebbleContractFiltered(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := store.NewPebble(pebbletest.Open(t), store.Name)
		if err := s.LoadFilter(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// The history commits its progress with the messages: a new reader of the
// same store starts right after the last batch, and the messages are
// there.
func TestPebbleCommitsProgressWithTheMessages(t *testing.T) {
	db := pebbletest.Open(t)
	s := store.NewPebble(db, "store@e1")
	e := events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: "c1", Conversation: "d:alice:bob",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: time.Now().UnixMilli()}
	recs := []projections.Record{
		{Event: e, Position: events.Position{Partition: 1, Offset: 7}, MsgID: 1<<48 | 7},
		{Event: events.GroupCreated{Group: "g", Owner: "alice"}, Position: events.Position{Partition: 1, Offset: 8}},
	}
	if err := s.ApplyBatch(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	tr, err := progress.New(context.Background(), progress.NewPebble(db, "store@e1"), progress.Config{Name: "store"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := tr.Next(1); got != 9 {
		t.Fatalf("progress after the batch: %d, want 9", got)
	}
	msgs, _, err := s.After(context.Background(), domain.DirectConversation("alice", "bob"), 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].Body != "hi" {
		t.Fatalf("After = %+v %v", msgs, err)
	}
}

// BenchmarkPebbleApplyBatch writes the history as a single node does:
// batches of 100 messages, each from one of 200 accounts to one of 2,000
// (random peers, so most conversations are touched now and then), with
// 100-byte bodies, to a store on disk. ns/msg is per message. The store
// has a history floor or not (a retention removed something: every
// message's id and conversation floor are then looked up), and its
// filters of held keys loaded or not.
func BenchmarkPebbleApplyBatch(b *testing.B) {
	for _, floored := range []bool{false, true} {
		for _, filtered := range []bool{false, true} {
			b.Run(fmt.Sprintf("floored=%v/filtered=%v", floored, filtered), func(b *testing.B) {
				benchmarkApplyBatch(b, floored, filtered)
			})
		}
	}
}

func benchmarkApplyBatch(b *testing.B, floored, filtered bool) {
	db := pebbletest.OpenOnDisk(b)
	s := store.NewPebble(db, store.Name)
	ctx := context.Background()
	if floored {
		if _, err := s.Remove(ctx, store.Floor{Conversation: domain.DirectConversation("nobody", "else"), Through: 1}); err != nil {
			b.Fatal(err)
		}
	}
	if filtered {
		if err := s.LoadFilter(ctx); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	body := strings.Repeat("lorem ipsum ", 9)[:100]
	const batch = 100
	recs := make([]projections.Record, batch)
	var offset int64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range recs {
			from := fmt.Sprintf("b1a2b3-%d", rng.IntN(200))
			to := fmt.Sprintf("b1a2b3-off-%d", rng.IntN(2000))
			c := domain.DirectConversation(domain.AccountID(from), domain.AccountID(to))
			recs[i] = projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: fmt.Sprintf("b1a2b3-%d", offset),
				Conversation: c.String(), SenderAccount: from, SenderDevice: "d", Kind: "text", Body: body, ServerTime: 1},
				Position: events.Position{Partition: 0, Offset: offset}, MsgID: domain.MsgID(1<<48 | offset)}
			offset++
		}
		if err := s.ApplyBatch(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(offset), "ns/msg")
}

// One batch of the log holds messages and the changes that follow them:
// the embedded history and the projection over any store apply them in
// the log's order, so each change finds its message.
func TestBatchesApplyChangesInLogOrder(t *testing.T) {
	at := func(off int64) events.Position { return events.Position{Partition: 1, Offset: off} }
	sent := func(cid, body string) events.MessageSent {
		return events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: cid, Conversation: "d:alice:bob",
			SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: body, ServerTime: time.Now().UnixMilli()}
	}
	recs := []projections.Record{
		{Event: sent("c1", "one"), Position: at(1), MsgID: 1<<48 | 1},
		{Event: events.MessageEdited{Conversation: "d:alice:bob", MsgID: 1<<48 | 1, Account: "alice", Device: "phone",
			ClientMsgID: "e1", Body: "one, edited", EditedAt: time.Now().UnixMilli()}, Position: at(2), MsgID: 1<<48 | 2},
		{Event: sent("c2", "two"), Position: at(3), MsgID: 1<<48 | 3},
		{Event: events.MessageDeleted{Conversation: "d:alice:bob", MsgID: 1<<48 | 3, Account: "alice", Device: "phone",
			DeletedAt: time.Now().UnixMilli()}, Position: at(4), MsgID: 1<<48 | 4},
		{Event: events.MessageEdited{Conversation: "d:alice:bob", MsgID: 1<<48 | 3, Account: "alice", Device: "phone",
			ClientMsgID: "e2", Body: "two, back", EditedAt: time.Now().UnixMilli()}, Position: at(5), MsgID: 1<<48 | 5},
	}
	mem := store.NewMemory()
	pb := store.NewPebble(pebbletest.Open(t), "store@e1")
	for name, tc := range map[string]struct {
		apply projections.Batcher
		s     store.Store
	}{"pebble": {pb, pb}, "projection over memory": {store.NewProjection(mem), mem}} {
		t.Run(name, func(t *testing.T) {
			for range 2 { // a batch applied again changes nothing
				if err := tc.apply.ApplyBatch(context.Background(), recs); err != nil {
					t.Fatal(err)
				}
			}
			msgs, _, err := tc.s.After(context.Background(), domain.DirectConversation("alice", "bob"), 0, 10)
			if err != nil || len(msgs) != 2 {
				t.Fatalf("After = %+v, %v", msgs, err)
			}
			if m := msgs[0]; m.Body != "one, edited" || m.EditedAt.IsZero() || m.Deleted || m.Revision != 1<<48|2 {
				t.Errorf("edited message = %+v", m)
			}
			if m := msgs[1]; m.Body != "" || !m.Deleted || !m.EditedAt.IsZero() || m.Revision != 1<<48|4 {
				t.Errorf("deleted message = %+v", m)
			}
		})
	}
}

// A message has one change index key, at its latest revision, and the
// retention removes it with the message: the index does not grow with
// changes nor outlive the history.
func TestPebbleChangeIndexFollowsTheMessage(t *testing.T) {
	db := pebbletest.Open(t)
	s := store.NewPebble(db, store.Name)
	ctx := context.Background()
	conv := domain.DirectConversation("alice", "bob")
	m1, m2 := storetest.Msg(conv, 1), storetest.Msg(conv, 2)
	if err := s.Save(ctx, m1, m2); err != nil {
		t.Fatal(err)
	}
	changeKeys := func() int {
		it, err := db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for it.SeekGE([]byte("mr/")); it.Valid() && strings.HasPrefix(string(it.Key()), "mr/"); it.Next() {
			n++
		}
		return n
	}
	if err := s.Amend(ctx, storetest.Edit(m1, 3, "e3", "x"), storetest.Edit(m1, 4, "e4", "y"), storetest.Edit(m2, 5, "e5", "z")); err != nil {
		t.Fatal(err)
	}
	if err := s.Erase(ctx, domain.Erasure{Account: "alice", At: time.UnixMilli(10_000), Revision: 6}, func(domain.ConversationID) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if n := changeKeys(); n != 2 {
		t.Errorf("%d change keys after five changes to two messages, want 2", n)
	}
	if _, err := s.Remove(ctx, store.Floor{Conversation: conv, Through: 1}); err != nil {
		t.Fatal(err)
	}
	if n := changeKeys(); n != 1 {
		t.Errorf("%d change keys after the retention removed one message, want 1", n)
	}
}

// A record of the log seen again at a later offset (an append retried)
// is skipped, and a client message id stays with the first message that
// used it: the embedded history, which most often answers both with one
// lookup of the client message id, stores what the projection over the
// memory store stores, with or without a retention floor in the store.
func TestPebbleLogDuplicates(t *testing.T) {
	ab, ac := domain.DirectConversation("alice", "bob"), domain.DirectConversation("alice", "carol")
	x, y, z := uuid.NewString(), uuid.NewString(), uuid.NewString()
	sent := func(id, cid string, c domain.ConversationID) events.MessageSent {
		return events.MessageSent{MessageID: id, ClientMsgID: cid, Conversation: c.String(), SenderAccount: "alice",
			SenderDevice: "phone", Kind: "text", Body: "body of " + id, ServerTime: 1000}
	}
	edit := func(c domain.ConversationID, off int64, cid string) events.MessageEdited {
		return events.MessageEdited{Conversation: c.String(), MsgID: 1<<48 | off, Account: "alice", Device: "phone",
			ClientMsgID: cid, Body: "edited", EditedAt: 2000}
	}
	// step is a batch of events at the next offsets, then floors to remove.
	type step struct {
		events []events.Event
		remove []store.Floor
	}
	tests := []struct {
		name  string
		steps []step
		want  map[domain.ConversationID][]int64 // offsets held
		// claims are the offsets that client message ids name.
		claims map[string]int64
	}{
		{"appended twice", []step{{events: []events.Event{sent(x, "c1", ab)}}, {events: []events.Event{sent(x, "c1", ab)}}},
			map[domain.ConversationID][]int64{ab: {1}}, map[string]int64{"c1": 1}},
		{"twice in one batch", []step{{events: []events.Event{sent(x, "c1", ab), sent(x, "c1", ab)}}},
			map[domain.ConversationID][]int64{ab: {1}}, map[string]int64{"c1": 1}},
		{"a new message id with a used client message id, appended twice", []step{
			{events: []events.Event{sent(x, "c1", ab)}}, {events: []events.Event{sent(y, "c1", ab)}}, {events: []events.Event{sent(y, "c1", ab)}}},
			map[domain.ConversationID][]int64{ab: {1, 2}}, map[string]int64{"c1": 1}},
		{"a send with an edit's client message id, appended twice", []step{
			{events: []events.Event{sent(x, "c1", ab), edit(ab, 1, "c2")}}, {events: []events.Event{sent(y, "c2", ac)}},
			{events: []events.Event{sent(y, "c2", ac), sent(z, "c3", ac)}}},
			map[domain.ConversationID][]int64{ab: {1}, ac: {3, 5}}, map[string]int64{"c1": 1, "c2": 1, "c3": 5}},
		{"appended twice in a store with a floor", []step{
			{events: []events.Event{sent(x, "c1", ab)}, remove: []store.Floor{{Conversation: ab, Through: 1<<48 | 1}}},
			{events: []events.Event{sent(y, "c2", ac)}}, {events: []events.Event{sent(y, "c2", ac)}}},
			map[domain.ConversationID][]int64{ab: {}, ac: {2}}, map[string]int64{"c1": 0, "c2": 2}},
		{"appended again after the retention removed the claim's holder", []step{
			{events: []events.Event{sent(x, "c1", ab), sent(y, "c1", ac)}, remove: []store.Floor{{Conversation: ab, Through: 1<<48 | 1}}},
			{events: []events.Event{sent(y, "c1", ac)}}},
			map[domain.ConversationID][]int64{ab: {}, ac: {2}}, map[string]int64{"c1": 0}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := store.NewMemory()
			pb := store.NewPebble(pebbletest.Open(t), store.Name)
			for name, tc := range map[string]struct {
				apply projections.Batcher
				s     store.Store
			}{"pebble": {pb, pb}, "projection over memory": {store.NewProjection(mem), mem}} {
				var off int64
				for _, st := range tt.steps {
					var recs []projections.Record
					for _, e := range st.events {
						off++
						recs = append(recs, projections.Record{Event: e, Position: events.Position{Partition: 1, Offset: off}, MsgID: domain.MsgID(1<<48 | off)})
					}
					if err := tc.apply.ApplyBatch(ctx, recs); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if len(st.remove) > 0 {
						if _, err := tc.s.Remove(ctx, st.remove...); err != nil {
							t.Fatalf("%s: Remove: %v", name, err)
						}
					}
				}
				for c, want := range tt.want {
					msgs, _, err := tc.s.After(ctx, c, 0, 10)
					if err != nil {
						t.Fatal(err)
					}
					got := []int64{}
					for _, m := range msgs {
						got = append(got, int64(m.MsgID)&(1<<48-1))
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("%s: %s holds offsets %v, want %v", name, c, got, want)
					}
				}
				for cid, want := range tt.claims {
					m, ok, err := tc.s.ByClientMsgID(ctx, "alice", cid)
					if err != nil {
						t.Fatal(err)
					}
					if got := int64(m.MsgID) & (1<<48 - 1); ok != (want != 0) || got != want {
						t.Errorf("%s: ByClientMsgID(%s) = offset %d, %v; want %d", name, cid, got, ok, want)
					}
				}
			}
		})
	}
}

// A store reopened over a history with a floor loads its filters from
// what the store holds: a record below the floor, and one whose message
// id the history holds, are still skipped.
func TestPebbleFiltersLoadWhatTheStoreHolds(t *testing.T) {
	ctx := context.Background()
	db := pebbletest.Open(t)
	conv := domain.DirectConversation("alice", "bob")
	rec := func(id, cid string, msgid int64) projections.Record {
		return projections.Record{Event: events.MessageSent{MessageID: id, ClientMsgID: cid, Conversation: conv.String(),
			SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: cid, ServerTime: time.Now().UnixMilli()},
			Position: events.Position{Partition: 0, Offset: msgid}, MsgID: domain.MsgID(1<<48 | msgid)}
	}
	first, second := uuid.NewString(), uuid.NewString()
	before := store.NewPebble(db, store.Name)
	if err := before.ApplyBatch(ctx, []projections.Record{rec(first, "c1", 10), rec(second, "c2", 20)}); err != nil {
		t.Fatal(err)
	}
	if _, err := before.Remove(ctx, store.Floor{Conversation: conv, Through: 1<<48 | 10}); err != nil {
		t.Fatal(err)
	}

	s := store.NewPebble(db, store.Name)
	if err := s.LoadFilter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyBatch(ctx, []projections.Record{rec(uuid.NewString(), "below-floor", 5), rec(second, "same-message-id", 30)}); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := s.After(ctx, conv, 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].ClientMsgID != "c2" {
		t.Fatalf("After = %+v, %v; want c2 alone", msgs, err)
	}
	if _, ok, err := s.ByClientMsgID(ctx, "alice", "c2"); err != nil || !ok {
		t.Errorf("ByClientMsgID(c2) = %v, %v; want found", ok, err)
	}
}

// A floor that rises is one key of the floors' filter, not one a rise:
// the retention raises a conversation's floor run after run, and the
// filter, which counts what is added, would otherwise outgrow its bound.
func TestPebbleRisingFloorIsOneKeyOfItsFilter(t *testing.T) {
	ctx := context.Background()
	s := store.NewPebble(pebbletest.Open(t), store.Name)
	if err := s.LoadFilter(ctx); err != nil {
		t.Fatal(err)
	}
	conv := domain.DirectConversation("alice", "bob")
	for through := range 70_000 { // past the first part's 65,536 keys
		if _, err := s.Remove(ctx, store.Floor{Conversation: conv, Through: domain.MsgID(through + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Filters(func(kind string, loaded bool, bytes int64) {
		if kind == "floors" && (!loaded || bytes != 96<<10) {
			t.Errorf("floors' filter after 70,000 rises of one floor: loaded %v, %d bytes; want its first part alone", loaded, bytes)
		}
	})
}
