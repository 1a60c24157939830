package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/store"
)

// changes reads conv's changes after a.
func changes(t *testing.T, s store.Store, conv domain.ConversationID, a domain.MsgID, limit int) ([]domain.Message, bool) {
	t.Helper()
	got, more, err := s.Changes(context.Background(), conv, a, limit)
	if err != nil {
		t.Fatalf("Changes(%s, %d, %d): %v", conv, a, limit, err)
	}
	return got, more
}

func testChanges(t *testing.T, s store.Store) {
	ac := domain.DirectConversation("alice", "carol")
	msgs := []domain.Message{Msg(ab, 1), Msg(ab, 2), Msg(ab, 3), Msg(ab, 4), Msg(ab, 5), Msg(ac, 6)}
	save(t, s, msgs...)
	amend(t, s, Edit(msgs[1], 7, "e7", "first"), Delete(msgs[2], 8), Edit(msgs[4], 9, "e9", "five"),
		Edit(msgs[1], 10, "e10", "second"), Edit(msgs[5], 11, "e11", "other conversation"))
	tests := []struct {
		name  string
		conv  domain.ConversationID
		after domain.MsgID
		limit int
		want  []domain.MsgID
		more  bool
	}{
		{"nothing held", ab, 0, 100, nil, false},
		{"unchanged messages only", ab, 1, 100, []domain.MsgID{}, false},
		{"a change to a later message is not missed", ab, 4, 100, []domain.MsgID{3, 2}, false},
		{"every change after the cursor, by revision", ab, 7, 100, []domain.MsgID{3, 5, 2}, false},
		{"a change at the cursor was seen", ab, 8, 100, []domain.MsgID{5, 2}, false},
		{"all seen", ab, 10, 100, []domain.MsgID{}, false},
		{"limit", ab, 7, 2, []domain.MsgID{3, 5}, true},
		{"limit exactly", ab, 7, 3, []domain.MsgID{3, 5, 2}, false},
		{"conversations apart", ac, 6, 100, []domain.MsgID{6}, false},
		{"conversations apart, seen", ac, 11, 100, []domain.MsgID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more := changes(t, s, tt.conv, tt.after, tt.limit)
			if !equalIDs(IDs(got), tt.want) || more != tt.more {
				t.Errorf("Changes(%d, %d) = %v, %v; want %v, %v", tt.after, tt.limit, IDs(got), more, tt.want, tt.more)
			}
		})
	}
	// The latest form, as Message reads it.
	got, _ := changes(t, s, ab, 7, 100)
	for _, m := range got {
		held, ok, err := s.Message(context.Background(), ab, m.MsgID)
		if err != nil || !ok || normal(held) != normal(m) {
			t.Errorf("change %d = %+v, the store holds %+v", m.MsgID, m, held)
		}
	}
	if len(got) == 3 && (got[2].Body != "second" || got[2].Revision != 10 || !got[0].Deleted || got[1].Body != "five") {
		t.Errorf("changes = %+v, want the latest forms", got)
	}
	// The retention removes a changed message with its change.
	remove(t, s, store.Floor{Conversation: ab, Through: 2})
	if got, _ := changes(t, s, ab, 7, 100); !equalIDs(IDs(got), []domain.MsgID{3, 5}) {
		t.Errorf("after the retention, Changes = %v, want [3 5]", IDs(got))
	}
	// A replayed change applies nothing and lists nothing twice.
	amend(t, s, Edit(msgs[1], 7, "e7", "first"), Delete(msgs[2], 8), Edit(msgs[4], 9, "e9", "five"))
	if got, _ := changes(t, s, ab, 4, 100); !equalIDs(IDs(got), []domain.MsgID{3}) {
		t.Errorf("after a replay, Changes(4) = %v, want [3]", IDs(got))
	}
}

func testChangesOfAnErasure(t *testing.T, s store.Store) {
	ctx := context.Background()
	ac := domain.DirectConversation("alice", "carol")
	bobs := Msg(ab, 2)
	bobs.Sender = domain.Sender{Account: "bob", Device: "web"}
	save(t, s, Msg(ab, 1), bobs, Msg(ab, 3), Msg(ab, 4), Msg(ac, 5))
	amend(t, s, Delete(Msg(ab, 3), 6))
	e := domain.Erasure{Account: "alice", At: time.UnixMilli(60_000), Revision: 9}
	if err := s.Erase(ctx, e, func(c domain.ConversationID) bool { return c == ab }); err != nil {
		t.Fatal(err)
	}
	// 1 and 4 are erased at revision 9 (in msgid order); 3 was deleted
	// before and keeps its revision; bob's 2 is untouched.
	got, _ := changes(t, s, ab, 4, 100)
	if !equalIDs(IDs(got), []domain.MsgID{3, 1, 4}) {
		t.Fatalf("Changes(4) = %v, want [3 1 4]", IDs(got))
	}
	for _, m := range got {
		if !m.Deleted || m.Body != "" {
			t.Errorf("change %d = %+v, want a tombstone", m.MsgID, m)
		}
	}
	if got[1].Revision != 9 || got[0].Revision != 6 {
		t.Errorf("revisions = %d, %d; want 6, 9", got[0].Revision, got[1].Revision)
	}
	if got, _ := changes(t, s, ab, 9, 100); len(got) != 0 {
		t.Errorf("Changes(9) = %v, want none", IDs(got))
	}
	// The erasure swept only ab: its revision is a position of ab's
	// partition, so ac is swept by its own partition's record.
	if got, _ := changes(t, s, ac, 5, 100); len(got) != 0 {
		t.Errorf("Changes of %s before its sweep = %v, want none", ac, IDs(got))
	}
}
