package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/store/storetest"
)

var ab = domain.DirectConversation("alice", "bob")

func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() })
}

// Group commit is a Store too: the same contract, with writes coalesced.
func TestGroupCommitContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewGroupCommit(store.NewMemory(), 3) })
}

func record(t *testing.T, e events.Event, offset int64) projections.Record {
	t.Helper()
	id, err := events.MsgID(1, offset)
	if err != nil {
		t.Fatal(err)
	}
	return projections.Record{Event: e, Position: events.Position{Partition: 0, Offset: offset}, MsgID: id}
}

func TestProjection(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	p := store.NewProjection(s)
	sent := events.MessageSent{
		MessageID: uuid.NewString(), ClientMsgID: "c1", Conversation: "d:alice:bob",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: 1,
	}
	r := record(t, sent, 7)
	for i := 0; i < 2; i++ { // a replay stores nothing twice
		if err := p.Apply(ctx, r); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	if err := p.Apply(ctx, record(t, events.GroupCreated{Group: "g1", Owner: "alice", Members: []string{"alice"}}, 8)); err != nil {
		t.Fatalf("Apply(GroupCreated) = %v, want it ignored", err)
	}
	bad := sent
	bad.SenderAccount = ""
	var poison *projections.PoisonError
	if err := p.Apply(ctx, record(t, bad, 9)); !errors.As(err, &poison) {
		t.Fatalf("Apply(bad record) = %v, want *PoisonError", err)
	}
	got, more, err := s.After(ctx, ab, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if more || len(got) != 1 || got[0].MsgID != r.MsgID || got[0].ClientMsgID != "c1" {
		t.Errorf("store holds %+v (more %v), want the one message at %d", got, more, r.MsgID)
	}
}
