// Package conversationstest is the contract every conversation index
// passes: memory, the embedded store (Pebble) and PostgreSQL list the same
// conversations after the same records.
package conversationstest

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

// Open returns a new, empty index for one case: a projections.Batcher or a
// projections.Projection as well as a conversations.Index.
type Open func(t *testing.T) conversations.Index

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// offsets numbers the records each case applies.
var offsets int64

// sent is a MessageSent record in conv at msgid, sent min minutes after t0.
func sent(conv string, msgid domain.MsgID, min int) projections.Record {
	from := "alice"
	if c, err := domain.ParseConversationID(conv); err == nil && c.Kind() == domain.KindDirect {
		a, _ := c.Accounts()
		from = string(a)
	}
	offsets++
	return projections.Record{
		Event: events.MessageSent{
			MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
			SenderAccount: from, SenderDevice: "phone", Kind: "text", Body: "x",
			ServerTime: t0.Add(time.Duration(min) * time.Minute).UnixMilli(),
		},
		MsgID:    msgid,
		Position: events.Position{Offset: offsets},
	}
}

func latest(conv string, msgid domain.MsgID, min int) conversations.Latest {
	c, err := domain.ParseConversationID(conv)
	if err != nil {
		panic(err)
	}
	return conversations.Latest{Conversation: c, MsgID: msgid, Time: t0.Add(time.Duration(min) * time.Minute)}
}

// sameList compares lists by conversation, msgid and instant.
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

// apply hands recs to idx in batches of batch records (1: one by one).
func apply(t *testing.T, idx conversations.Index, batch int, recs ...projections.Record) error {
	t.Helper()
	ctx := context.Background()
	if b, ok := idx.(projections.Batcher); ok {
		for len(recs) > 0 {
			n := min(batch, len(recs))
			if err := b.ApplyBatch(ctx, recs[:n]); err != nil {
				return err
			}
			recs = recs[n:]
		}
		return nil
	}
	p := idx.(projections.Projection)
	var errs []error
	for _, r := range recs {
		if err := p.Apply(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func list(t *testing.T, idx conversations.Index, account domain.AccountID, groups []domain.GroupID, since time.Time, limit int) []conversations.Latest {
	t.Helper()
	got, err := idx.List(context.Background(), account, groups, since, limit)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Run runs the contract against indexes made by open.
func Run(t *testing.T, open Open) {
	t.Run("list", func(t *testing.T) {
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
				m := open(t)
				if err := apply(t, m, 3, log...); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				got := list(t, m, tt.account, tt.groups, tt.since, tt.limit)
				if !sameList(got, tt.want) {
					t.Errorf("List =\n%v\nwant\n%v", got, tt.want)
				}
			})
		}
	})

	t.Run("applying is idempotent", func(t *testing.T) {
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
				m := open(t)
				for _, i := range tt.order {
					if err := apply(t, m, 1, log[i]); err != nil {
						t.Fatal(err)
					}
				}
				if got := list(t, m, "alice", []domain.GroupID{"team"}, time.Time{}, 10); !sameList(got, want) {
					t.Errorf("List = %v, want %v", got, want)
				}
			})
		}
	})

	t.Run("other events are ignored and a bad message is skipped", func(t *testing.T) {
		m := open(t)
		bad := sent("d:alice:bob", 10, 1)
		e := bad.Event.(events.MessageSent)
		e.Conversation = "d:bob:alice"
		bad.Event = e
		_ = apply(t, m, 3, projections.Record{Event: events.GroupCreated{Group: "team", Owner: "alice"}}, bad, sent("g:team", 11, 2))
		if got := list(t, m, "alice", []domain.GroupID{"team"}, time.Time{}, 10); !sameList(got, []conversations.Latest{latest("g:team", 11, 2)}) {
			t.Errorf("List = %v, want only g:team", got)
		}
	})
}
