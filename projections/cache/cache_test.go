package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

const epoch = 1

func sentRecord(t *testing.T, conv string, part int32, offset int64, at time.Time) projections.Record {
	t.Helper()
	id, err := events.MsgID(epoch, offset)
	if err != nil {
		t.Fatal(err)
	}
	e := events.MessageSent{
		MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: at.UnixMilli(),
	}
	return projections.Record{Event: e, Position: events.Position{Partition: part, Offset: offset}, MsgID: id}
}

func mid(t *testing.T, offset int64) domain.MsgID {
	t.Helper()
	id, err := events.MsgID(epoch, offset)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestProjectionFloor(t *testing.T) {
	gx := domain.GroupConversation("x")
	type rec struct {
		conv   string
		part   int32
		offset int64
	}
	tests := []struct {
		name         string
		fromLogStart bool
		records      []rec
		conv         domain.ConversationID
		// lowest after the cache answers for, and the one below it that it refuses
		coveredFrom domain.MsgID
		refused     *domain.MsgID
	}{
		{
			name:         "live consumer vouches only from the message on",
			fromLogStart: false,
			records:      []rec{{"g:x", 0, 5}},
			conv:         gx,
			coveredFrom:  1<<48 | 4,
			refused:      ptr(1<<48 | 3),
		},
		{
			name:         "from an untruncated log start everything is covered",
			fromLogStart: true,
			records:      []rec{{"g:other", 0, 0}, {"g:x", 0, 7}},
			conv:         gx,
			coveredFrom:  0,
		},
		{
			name:         "from a truncated log the first offset of the partition bounds coverage",
			fromLogStart: true,
			records:      []rec{{"g:other", 0, 100}, {"g:x", 0, 105}},
			conv:         gx,
			coveredFrom:  1<<48 | 99,
			refused:      ptr(1<<48 | 98),
		},
		{
			name:         "partitions are tracked separately",
			fromLogStart: true,
			records:      []rec{{"g:other", 0, 0}, {"g:x", 1, 40}},
			conv:         gx,
			coveredFrom:  1<<48 | 39,
			refused:      ptr(0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			c := NewMemory(Retention)
			p := NewProjection(c, epoch, tt.fromLogStart)
			var last domain.MsgID
			for _, r := range tt.records {
				rec := sentRecord(t, r.conv, r.part, r.offset, now)
				if err := p.Apply(context.Background(), rec); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if r.conv == tt.conv.String() {
					last = rec.MsgID
				}
			}
			check(t, c, tt.conv, read{after: tt.coveredFrom, want: []domain.MsgID{last}, wantCovered: true})
			if tt.refused != nil {
				check(t, c, tt.conv, read{after: *tt.refused})
			}
		})
	}
}

func ptr(id domain.MsgID) *domain.MsgID { return &id }

func TestProjectionIgnoresOtherEventsAndReportsPoison(t *testing.T) {
	c := NewMemory(Retention)
	p := NewProjection(c, epoch, true)
	ctx := context.Background()
	if err := p.Apply(ctx, projections.Record{Event: events.GroupCreated{Group: "x", Owner: "alice"}}); err != nil {
		t.Fatalf("Apply(GroupCreated) = %v", err)
	}
	bad := sentRecord(t, "g:x", 0, 3, time.Now())
	e := bad.Event.(events.MessageSent)
	e.MessageID = "nope"
	bad.Event = e
	var poison *projections.PoisonError
	if err := p.Apply(ctx, bad); !errors.As(err, &poison) {
		t.Fatalf("Apply(bad) = %v, want *PoisonError", err)
	}
	check(t, c, domain.GroupConversation("x"), read{after: 0})

	// Replaying a record caches it once.
	good := sentRecord(t, "g:x", 0, 4, time.Now())
	for i := 0; i < 3; i++ {
		if err := p.Apply(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	check(t, c, domain.GroupConversation("x"), read{after: mid(t, 3), want: []domain.MsgID{good.MsgID}, wantCovered: true})
}

// After the log moves to a new cluster with a higher epoch, offset 0 of the
// new log is not the start of history: the earlier messages (lower epoch)
// are in the store only. An in-memory cache rebuilt from the new log must
// not answer for a cursor from the old epoch, or a client returning within
// the retention would miss the old epoch's tail (I3).
func TestProjectionFloorAfterEpochMove(t *testing.T) {
	const newEpoch = 2
	c := NewMemory(Retention)
	p := NewProjection(c, newEpoch, true)
	first, err := events.MsgID(newEpoch, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := events.MessageSent{
		MessageID: uuid.NewString(), ClientMsgID: "c1", Conversation: "g:x",
		SenderAccount: "alice", SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: time.Now().UnixMilli(),
	}
	r := projections.Record{Event: e, Position: events.Position{Partition: 0, Offset: 0}, MsgID: first}
	if err := p.Apply(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	oldCursor, err := events.MsgID(1, 500) // the client's last msgid, from epoch 1
	if err != nil {
		t.Fatal(err)
	}
	check(t, c, domain.GroupConversation("x"), read{after: oldCursor})
	// The new epoch's range itself is covered.
	check(t, c, domain.GroupConversation("x"), read{after: first - 1, want: []domain.MsgID{first}, wantCovered: true})
}

func TestGlobEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"parley:", "parley:"},
		{"a*b?c[d]e\\f", `a\*b\?c\[d\]e\\f`},
		{"", ""},
	} {
		if got := globEscape(tc.in); got != tc.want {
			t.Errorf("globEscape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
