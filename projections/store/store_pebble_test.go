package store_test

import (
	"context"
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
