package projections_test

import (
	"errors"
	"testing"
	"time"

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
