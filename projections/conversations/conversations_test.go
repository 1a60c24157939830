package conversations_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// sent is a MessageSent record in conv at msgid, sent min minutes after t0.
func sent(conv string, msgid domain.MsgID, min int) projections.Record {
	from := "alice"
	if c, err := domain.ParseConversationID(conv); err == nil && c.Kind() == domain.KindDirect {
		a, _ := c.Accounts()
		from = string(a)
	}
	return projections.Record{
		Event: events.MessageSent{
			MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
			SenderAccount: from, SenderDevice: "phone", Kind: "text", Body: "x",
			ServerTime: t0.Add(time.Duration(min) * time.Minute).UnixMilli(),
		},
		MsgID: msgid,
	}
}

func latest(conv string, msgid domain.MsgID, min int) conversations.Latest {
	c, err := domain.ParseConversationID(conv)
	if err != nil {
		panic(err)
	}
	return conversations.Latest{Conversation: c, MsgID: msgid, Time: t0.Add(time.Duration(min) * time.Minute)}
}

// sameList compares lists by conversation, msgid and instant (the model
// keeps times in the local zone).
func sameList(got, want []conversations.Latest) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Conversation != want[i].Conversation || got[i].MsgID != want[i].MsgID || !got[i].Time.Equal(want[i].Time) {
			return false
		}
	}
	return true
}

func TestMemoryList(t *testing.T) {
	log := []projections.Record{
		sent("d:alice:bob", 10, 1),
		sent("d:alice:carol", 20, 5),
		sent("g:team", 30, 3),
		sent("d:bob:carol", 40, 9),  // not alice's
		sent("g:other", 50, 8),      // alice is not in it
		sent("d:alice:bob", 11, 7),  // newer message in an existing conversation
		sent("d:alice:dave", 60, 5), // same time as alice:carol
		sent("d:alice:alice", 70, 2),
	}
	tests := []struct {
		name    string
		account domain.AccountID
		groups  []domain.GroupID
		since   time.Time
		limit   int
		want    []conversations.Latest
	}{
		{
			name: "newest first, ties by conversation id", account: "alice", groups: []domain.GroupID{"team"}, limit: 100,
			want: []conversations.Latest{
				latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5), latest("d:alice:dave", 60, 5),
				latest("g:team", 30, 3), latest("d:alice:alice", 70, 2),
			},
		},
		{
			name: "limit", account: "alice", groups: []domain.GroupID{"team"}, limit: 2,
			want: []conversations.Latest{latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5)},
		},
		{
			name: "since is exclusive", account: "alice", groups: []domain.GroupID{"team"}, since: t0.Add(5 * time.Minute), limit: 100,
			want: []conversations.Latest{latest("d:alice:bob", 11, 7)},
		},
		{
			name: "since just before a message includes it", account: "alice", groups: []domain.GroupID{"team"}, since: t0.Add(3*time.Minute - time.Millisecond), limit: 100,
			want: []conversations.Latest{latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5), latest("d:alice:dave", 60, 5), latest("g:team", 30, 3)},
		},
		{
			name: "since after everything", account: "alice", groups: []domain.GroupID{"team"}, since: t0.Add(time.Hour), limit: 100,
		},
		{
			name: "groups come only from the caller", account: "alice", limit: 100,
			want: []conversations.Latest{
				latest("d:alice:bob", 11, 7), latest("d:alice:carol", 20, 5), latest("d:alice:dave", 60, 5), latest("d:alice:alice", 70, 2),
			},
		},
		{
			name: "the other side of a direct conversation sees it", account: "carol", limit: 100,
			want: []conversations.Latest{latest("d:bob:carol", 40, 9), latest("d:alice:carol", 20, 5)},
		},
		{
			name: "a group without messages is not listed", account: "erin", groups: []domain.GroupID{"silent"}, limit: 100,
		},
		{
			name: "limit zero", account: "alice", groups: []domain.GroupID{"team"}, limit: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := conversations.NewMemory()
			for _, r := range log {
				if err := m.Apply(context.Background(), r); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
			got := m.List(tt.account, tt.groups, tt.since, tt.limit)
			if !sameList(got, tt.want) {
				t.Errorf("List =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestMemoryApplyIsIdempotent(t *testing.T) {
	log := []projections.Record{
		sent("d:alice:bob", 10, 1),
		sent("g:team", 30, 3),
		sent("d:alice:bob", 12, 4),
	}
	want := []conversations.Latest{latest("d:alice:bob", 12, 4), latest("g:team", 30, 3)}
	tests := []struct {
		name  string
		order []int
	}{
		{"once", []int{0, 1, 2}},
		{"each twice", []int{0, 0, 1, 1, 2, 2}},
		{"whole log twice", []int{0, 1, 2, 0, 1, 2}},
		{"older message after a newer one", []int{2, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := conversations.NewMemory()
			for _, i := range tt.order {
				if err := m.Apply(context.Background(), log[i]); err != nil {
					t.Fatal(err)
				}
			}
			if got := m.List("alice", []domain.GroupID{"team"}, time.Time{}, 10); !sameList(got, want) {
				t.Errorf("List = %v, want %v", got, want)
			}
		})
	}
}

func TestMemoryApplyIgnoresOtherEventsAndReportsPoison(t *testing.T) {
	m := conversations.NewMemory()
	ctx := context.Background()
	if err := m.Apply(ctx, projections.Record{Event: events.GroupCreated{Group: "team", Owner: "alice"}}); err != nil {
		t.Fatalf("Apply(GroupCreated) = %v", err)
	}
	bad := sent("d:alice:bob", 10, 1)
	e := bad.Event.(events.MessageSent)
	e.Conversation = "d:bob:alice"
	bad.Event = e
	var poison *projections.PoisonError
	if err := m.Apply(ctx, bad); !errors.As(err, &poison) {
		t.Fatalf("Apply(bad) = %v, want *PoisonError", err)
	}
	if got := m.List("alice", []domain.GroupID{"team"}, time.Time{}, 10); len(got) != 0 {
		t.Errorf("List = %v, want empty", got)
	}
}
