package projections_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

func TestRecordMessage(t *testing.T) {
	id := uuid.New()
	good := events.MessageSent{
		MessageID: id.String(), ClientMsgID: "c1", Conversation: "d:alice:bob",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: 1000,
	}
	bad := good
	bad.Conversation = "d:bob:alice"
	tests := []struct {
		name       string
		event      events.Event
		wantOK     bool
		wantPoison bool
	}{
		{"message", good, true, false},
		{"invalid message is poison", bad, true, true},
		{"group event is not a message", events.GroupCreated{Group: "g1", Owner: "alice"}, false, false},
		{"members added is not a message", events.GroupMembersAdded{Group: "g1"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := projections.Record{Event: tt.event, MsgID: 42}
			m, ok, err := r.Message()
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			var poison *projections.PoisonError
			if got := errors.As(err, &poison); got != tt.wantPoison {
				t.Fatalf("err = %v, want poison %v", err, tt.wantPoison)
			}
			if tt.wantPoison {
				var inv *domain.InvalidError
				if !errors.As(err, &inv) {
					t.Errorf("poison error %v does not unwrap to the validation error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantOK {
				return
			}
			if m.MsgID != 42 || m.ID != id || m.Conversation != domain.DirectConversation("alice", "bob") || m.Body != "hi" ||
				!m.ServerTime.Equal(time.UnixMilli(1000)) {
				t.Errorf("Message = %+v", m)
			}
		})
	}
}

func TestPoisonErrorUnwraps(t *testing.T) {
	inner := errors.New("boom")
	err := error(&projections.PoisonError{Err: inner})
	if !errors.Is(err, inner) {
		t.Errorf("PoisonError does not unwrap")
	}
	if got, want := err.Error(), "poison record: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

type countingProjection struct{ n int }

func (c *countingProjection) Apply(context.Context, projections.Record) error { c.n++; return nil }

// A message without a Kafka position cannot be mapped to a msgid: the
// handler refuses it (so it is redelivered or surfaces) and advances nothing.
func TestHandlerRefusesMessageWithoutPosition(t *testing.T) {
	p := &countingProjection{}
	progress := projections.NewProgress()
	h := projections.Handler("test", p, 1, progress, slog.New(slog.NewTextHandler(io.Discard, nil)))
	payload, err := events.Encode(events.GroupCreated{Group: "g1", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	msg := message.NewMessage(uuid.NewString(), payload)
	msg.Metadata.Set(events.MetadataName, events.GroupCreatedV1)
	if err := h(msg); err == nil {
		t.Fatalf("Handler accepted a message with no log position")
	}
	if p.n != 0 {
		t.Errorf("projection applied %d times", p.n)
	}
	if progress.Next(0) != 0 {
		t.Errorf("progress advanced to %d", progress.Next(0))
	}
}
