package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/store"
)

var (
	ab = domain.DirectConversation("alice", "bob")
	g1 = domain.GroupConversation("g1")
)

// msg builds a message of conv at msgid, sent by alice with client id c<msgid>.
func msg(conv domain.ConversationID, id domain.MsgID) domain.Message {
	return domain.Message{
		ID: uuid.New(), MsgID: id, ClientMsgID: fmt.Sprintf("c%d", id),
		Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: conv,
		Kind: "text", Body: fmt.Sprint("body ", id), ServerTime: time.UnixMilli(int64(id) * 1000),
	}
}

func ids(ms []domain.Message) []domain.MsgID {
	out := []domain.MsgID{}
	for _, m := range ms {
		out = append(out, m.MsgID)
	}
	return out
}

func after(t *testing.T, s store.Store, conv domain.ConversationID, a domain.MsgID, limit int) ([]domain.MsgID, bool) {
	t.Helper()
	ms, more, err := s.After(context.Background(), conv, a, limit)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	return ids(ms), more
}

func TestMemorySaveIsIdempotent(t *testing.T) {
	ctx := context.Background()
	m1, m2 := msg(ab, 10), msg(ab, 20)
	sameIDOtherPlace := m1
	sameIDOtherPlace.MsgID = 30
	samePlaceOtherID := msg(ab, 20)
	samePlaceOtherID.Body = "impostor"

	tests := []struct {
		name  string
		saves [][]domain.Message
		want  []domain.Message
	}{
		{"save once", [][]domain.Message{{m1, m2}}, []domain.Message{m1, m2}},
		{"save twice", [][]domain.Message{{m1, m2}, {m1, m2}}, []domain.Message{m1, m2}},
		{"duplicate inside one call", [][]domain.Message{{m1, m1, m2, m2}}, []domain.Message{m1, m2}},
		{"same message id at another msgid is skipped", [][]domain.Message{{m1, m2}, {sameIDOtherPlace}}, []domain.Message{m1, m2}},
		{"same msgid with another message id is skipped", [][]domain.Message{{m1, m2}, {samePlaceOtherID}}, []domain.Message{m1, m2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store.NewMemory()
			for _, batch := range tt.saves {
				if err := s.Save(ctx, batch...); err != nil {
					t.Fatalf("Save: %v", err)
				}
			}
			got, more, err := s.After(ctx, ab, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if more {
				t.Errorf("more = true")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("After = %v, want %v", ids(got), ids(tt.want))
			}
		})
	}
}

func TestMemorySaveOutOfOrder(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	for _, id := range []domain.MsgID{50, 10, 30, 20, 40, 10, 60, 5} {
		if err := s.Save(ctx, msg(ab, id)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := after(t, s, ab, 0, 100); !reflect.DeepEqual(got, []domain.MsgID{5, 10, 20, 30, 40, 50, 60}) {
		t.Errorf("After = %v, want msgid order", got)
	}
}

func TestMemoryAfterPaging(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	// msgids with gaps, as the log gives them; another conversation beside.
	for _, id := range []domain.MsgID{2, 4, 6, 8, 10} {
		if err := s.Save(ctx, msg(ab, id), msg(g1, id+1)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		conv     domain.ConversationID
		after    domain.MsgID
		limit    int
		want     []domain.MsgID
		wantMore bool
	}{
		{"all", ab, 0, 10, []domain.MsgID{2, 4, 6, 8, 10}, false},
		{"exactly all", ab, 0, 5, []domain.MsgID{2, 4, 6, 8, 10}, false},
		{"first page", ab, 0, 2, []domain.MsgID{2, 4}, true},
		{"second page", ab, 4, 2, []domain.MsgID{6, 8}, true},
		{"last page", ab, 8, 2, []domain.MsgID{10}, false},
		{"after a gap value", ab, 5, 2, []domain.MsgID{6, 8}, true},
		{"after the end", ab, 10, 2, []domain.MsgID{}, false},
		{"far after the end", ab, 1 << 50, 2, []domain.MsgID{}, false},
		{"limit zero reports more", ab, 0, 0, []domain.MsgID{}, true},
		{"negative after", ab, -1, 1, []domain.MsgID{2}, true},
		{"other conversation is separate", g1, 0, 10, []domain.MsgID{3, 5, 7, 9, 11}, false},
		{"unknown conversation", domain.GroupConversation("nope"), 0, 10, []domain.MsgID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more := after(t, s, tt.conv, tt.after, tt.limit)
			if !reflect.DeepEqual(got, tt.want) || more != tt.wantMore {
				t.Errorf("After(%d, %d) = %v more %v, want %v more %v", tt.after, tt.limit, got, more, tt.want, tt.wantMore)
			}
		})
	}
}

// Paging through with the last msgid of each page yields every message once.
func TestMemoryAfterWalk(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	var want []domain.MsgID
	for id := domain.MsgID(1); id <= 23; id++ {
		if err := s.Save(ctx, msg(ab, id*3)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id*3)
	}
	var got []domain.MsgID
	cursor := domain.MsgID(0)
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		page, more := after(t, s, ab, cursor, 5)
		got = append(got, page...)
		if !more {
			break
		}
		cursor = page[len(page)-1]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("walk = %v, want %v", got, want)
	}
}

// After returns a copy: a caller changing it cannot corrupt the store.
func TestMemoryAfterReturnsACopy(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	if err := s.Save(ctx, msg(ab, 1), msg(ab, 2)); err != nil {
		t.Fatal(err)
	}
	page, _, _ := s.After(ctx, ab, 0, 10)
	page[0].Body = "changed"
	page[1] = msg(ab, 99)
	again, _, _ := s.After(ctx, ab, 0, 10)
	if got := ids(again); !reflect.DeepEqual(got, []domain.MsgID{1, 2}) || again[0].Body != "body 1" {
		t.Errorf("store changed through a returned page: %+v", again)
	}
}

func TestMemoryByClientMsgID(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	first := msg(ab, 10)
	first.ClientMsgID = "k1"
	retry := msg(ab, 20) // a second message with the same key: the first wins
	retry.ClientMsgID = "k1"
	bobs := msg(ab, 30)
	bobs.Sender = domain.Sender{Account: "bob", Device: "web"}
	bobs.ClientMsgID = "k1"
	if err := s.Save(ctx, first, retry, bobs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		account domain.AccountID
		key     string
		want    *domain.Message
	}{
		{"found", "alice", "k1", &first},
		{"keyed per account", "bob", "k1", &bobs},
		{"unknown key", "alice", "k2", nil},
		{"unknown account", "carol", "k1", nil},
		{"case matters", "alice", "K1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok, err := s.ByClientMsgID(ctx, tt.account, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tt.want != nil)
			}
			if tt.want != nil && !reflect.DeepEqual(m, *tt.want) {
				t.Errorf("ByClientMsgID = %+v, want %+v", m, *tt.want)
			}
		})
	}
}

func TestMemoryConcurrent(t *testing.T) {
	ctx := context.Background()
	s := store.NewMemory()
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 100; i++ {
				_ = s.Save(ctx, msg(ab, domain.MsgID(w*1000+i)))
				_, _, _ = s.After(ctx, ab, 0, 10)
				_, _, _ = s.ByClientMsgID(ctx, "alice", "c1")
			}
		}(w)
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	if got, _ := after(t, s, ab, -1, 1000); len(got) != 400 {
		t.Errorf("stored %d messages, want 400", len(got))
	}
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
