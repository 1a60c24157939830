package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/store"
)

// Edit is an edit of m by its sender at revision rev, with client message
// id cid.
func Edit(m domain.Message, rev domain.MsgID, cid, body string) domain.Amendment {
	return domain.Amendment{Conversation: m.Conversation, MsgID: m.MsgID, By: m.Sender, Body: body,
		ClientMsgID: cid, At: time.UnixMilli(int64(rev) * 1000), Revision: rev}
}

// Delete is the deletion of m by its sender at revision rev.
func Delete(m domain.Message, rev domain.MsgID) domain.Amendment {
	return domain.Amendment{Conversation: m.Conversation, MsgID: m.MsgID, By: m.Sender, Delete: true,
		At: time.UnixMilli(int64(rev) * 1000), Revision: rev}
}

func amend(t *testing.T, s store.Store, changes ...domain.Amendment) {
	t.Helper()
	if err := s.Amend(context.Background(), changes...); err != nil {
		t.Fatalf("Amend: %v", err)
	}
}

// held reads m's msgid back three ways — Message, After and by a client
// message id — and checks that all agree with want.
func held(t *testing.T, s store.Store, want domain.Message, cid string) {
	t.Helper()
	ctx := context.Background()
	got, ok, err := s.Message(ctx, want.Conversation, want.MsgID)
	if err != nil || !ok {
		t.Fatalf("Message(%d) = %v, %v", want.MsgID, ok, err)
	}
	if normal(got) != normal(want) {
		t.Errorf("Message(%d) = %+v\nwant %+v", want.MsgID, got, want)
	}
	page, _ := after(t, s, want.Conversation, want.MsgID-1, 1)
	if len(page) != 1 || normal(page[0]) != normal(want) {
		t.Errorf("After(%d) = %+v\nwant %+v", want.MsgID-1, page, want)
	}
	if cid != "" {
		byKey, ok, err := s.ByClientMsgID(ctx, want.Sender.Account, cid)
		if err != nil || !ok || normal(byKey) != normal(want) {
			t.Errorf("ByClientMsgID(%s) = %+v, %v, %v\nwant %+v", cid, byKey, ok, err, want)
		}
	}
}

func testEdit(t *testing.T, s store.Store) {
	m, other := Msg(ab, 10), Msg(ab, 11)
	save(t, s, m, other)
	first, second := Edit(m, 12, "e1", "first edit"), Edit(m, 14, "e2", "second edit")
	edited := func(a domain.Amendment) domain.Message {
		out := m
		out.Body, out.EditedAt, out.Revision = a.Body, a.At, a.Revision
		return out
	}
	steps := []struct {
		name    string
		changes []domain.Amendment
		want    domain.Message
		cid     string
	}{
		{"an edit replaces the body", []domain.Amendment{first}, edited(first), "e1"},
		{"the same edit again changes nothing", []domain.Amendment{first}, edited(first), "e1"},
		{"a later edit wins", []domain.Amendment{second}, edited(second), "e2"},
		{"an earlier edit applied again changes nothing", []domain.Amendment{first}, edited(second), "e1"},
		{"the send's key still names the message", nil, edited(second), m.ClientMsgID},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			amend(t, s, st.changes...)
			held(t, s, st.want, st.cid)
			held(t, s, other, other.ClientMsgID)
		})
	}
	t.Run("an edit's key used by a send names the sent message", func(t *testing.T) {
		amend(t, s, Edit(m, 16, other.ClientMsgID, "third"))
		got, ok, err := s.ByClientMsgID(context.Background(), "alice", other.ClientMsgID)
		if err != nil || !ok || got.MsgID != other.MsgID {
			t.Errorf("ByClientMsgID = %+v, %v, %v; want message %d", got, ok, err, other.MsgID)
		}
	})
	t.Run("saving the message again does not undo the edit", func(t *testing.T) {
		save(t, s, m)
		got, _, _ := s.Message(context.Background(), ab, m.MsgID)
		if got.Body != "third" {
			t.Errorf("body %q after a second save, want the edit's", got.Body)
		}
	})
}

func testDelete(t *testing.T, s store.Store) {
	m, other := Msg(g1, 10), Msg(g1, 11)
	save(t, s, m, other)
	amend(t, s, Edit(m, 12, "e1", "edited"))
	tomb := m
	tomb.Body, tomb.Deleted, tomb.Revision = "", true, 13
	steps := []struct {
		name    string
		changes []domain.Amendment
	}{
		{"a deletion leaves a tombstone", []domain.Amendment{Delete(m, 13)}},
		{"deleting again changes nothing", []domain.Amendment{Delete(m, 15)}},
		{"an edit after the deletion changes nothing", []domain.Amendment{Edit(m, 16, "e2", "back")}},
		{"an edit before it, applied again, changes nothing", []domain.Amendment{Edit(m, 12, "e1", "edited")}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			amend(t, s, st.changes...)
			held(t, s, tomb, m.ClientMsgID)
			held(t, s, other, other.ClientMsgID)
		})
	}
	t.Run("saving the message again does not resurrect it", func(t *testing.T) {
		save(t, s, m)
		held(t, s, tomb, "")
	})
	t.Run("the tombstone keeps its place in the conversation", func(t *testing.T) {
		if got, _ := afterIDs(t, s, g1, 0, 10); !equalIDs(got, []domain.MsgID{10, 11}) {
			t.Errorf("After = %v, want [10 11]", got)
		}
	})
	t.Run("an edit refused leaves its key free", func(t *testing.T) {
		if _, ok, err := s.ByClientMsgID(context.Background(), "alice", "e2"); err != nil || ok {
			t.Errorf("ByClientMsgID(e2) = %v, %v; want not found", ok, err)
		}
	})
}

func testAmendUnknown(t *testing.T, s store.Store) {
	m := Msg(ab, 10)
	save(t, s, m)
	ghost := Msg(ab, 20)
	elsewhere := Msg(g1, 10)
	amend(t, s, Edit(ghost, 21, "e1", "x"), Delete(ghost, 22), Edit(elsewhere, 23, "e2", "y"))
	amend(t, s)
	if _, ok, err := s.Message(context.Background(), ab, 20); err != nil || ok {
		t.Errorf("Message(20) = %v, %v; a change made a message", ok, err)
	}
	if got, _ := afterIDs(t, s, g1, 0, 10); len(got) != 0 {
		t.Errorf("group holds %v; a change made a message", got)
	}
	for _, cid := range []string{"e1", "e2"} {
		if _, ok, err := s.ByClientMsgID(context.Background(), "alice", cid); err != nil || ok {
			t.Errorf("ByClientMsgID(%s) = %v, %v; want not found", cid, ok, err)
		}
	}
	held(t, s, m, m.ClientMsgID)
}

// Changes and messages interleave in the log; applied in turn, each
// change finds the message saved just before it.
func testAmendAfterSaveInBatches(t *testing.T, s store.Store) {
	a, b := Msg(ab, 10), Msg(ab, 12)
	save(t, s, a)
	amend(t, s, Edit(a, 11, "e1", "a edited"))
	save(t, s, b)
	amend(t, s, Delete(b, 13), Edit(a, 14, "e2", "a edited twice"))
	want := a
	want.Body, want.EditedAt, want.Revision = "a edited twice", time.UnixMilli(14000), 14
	held(t, s, want, "e2")
	tomb := b
	tomb.Body, tomb.Deleted, tomb.Revision = "", true, 13
	held(t, s, tomb, b.ClientMsgID)
}
