package storetest

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/store"
)

// at is the time Msg gives msgid id.
func at(id domain.MsgID) time.Time { return time.UnixMilli(int64(id) * 1000) }

func expired(t *testing.T, s store.Store, cutoff time.Time, max int) []store.Floor {
	t.Helper()
	fs, err := s.Expired(context.Background(), cutoff, max)
	if err != nil {
		t.Fatalf("Expired: %v", err)
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].Conversation.String() < fs[j].Conversation.String() })
	return fs
}

func remove(t *testing.T, s store.Store, fs ...store.Floor) int {
	t.Helper()
	n, err := s.Remove(context.Background(), fs...)
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	return n
}

func goneThrough(t *testing.T, s store.Store, c domain.ConversationID) domain.MsgID {
	t.Helper()
	id, err := s.GoneThrough(context.Background(), c)
	if err != nil {
		t.Fatalf("GoneThrough(%s): %v", c, err)
	}
	return id
}

// The retention removes each conversation's run of old messages, exactly;
// the floor says how far, and a replay does not bring them back.
func testRetentionRemovesTheOldRun(t *testing.T, s store.Store) {
	for id := domain.MsgID(1); id <= 5; id++ {
		save(t, s, Msg(ab, id))
	}
	save(t, s, Msg(g1, 2), Msg(g1, 9)) // client ids c2 and c9 are ab's c2 and g1's c9
	if fs := expired(t, s, at(1), 100); len(fs) != 0 {
		t.Fatalf("Expired before the first message = %+v, want nothing", fs)
	}
	fs := expired(t, s, at(3).Add(time.Millisecond), 100)
	want := []store.Floor{{Conversation: ab, Through: 3, Messages: 3}, {Conversation: g1, Through: 2, Messages: 1}}
	if len(fs) != 2 || fs[0] != want[1] && fs[0] != want[0] || fs[1] != want[0] && fs[1] != want[1] || fs[0] == fs[1] {
		t.Fatalf("Expired = %+v, want %+v", fs, want)
	}
	if n := remove(t, s, fs...); n != 4 {
		t.Errorf("Remove removed %d, want 4", n)
	}
	if got, _ := afterIDs(t, s, ab, 0, 10); !equalIDs(got, []domain.MsgID{4, 5}) {
		t.Errorf("ab after the retention = %v, want [4 5]", got)
	}
	if got, _ := afterIDs(t, s, g1, 0, 10); !equalIDs(got, []domain.MsgID{9}) {
		t.Errorf("g1 after the retention = %v, want [9]", got)
	}
	if g, w := goneThrough(t, s, ab), domain.MsgID(3); g != w {
		t.Errorf("GoneThrough(ab) = %d, want %d", g, w)
	}
	if g := goneThrough(t, s, domain.DirectConversation("carol", "dave")); g != 0 {
		t.Errorf("GoneThrough of a conversation that lost nothing = %d, want 0", g)
	}
	for _, c := range []string{"c1", "c3"} {
		if _, ok, err := s.ByClientMsgID(context.Background(), "alice", c); err != nil || ok {
			t.Errorf("ByClientMsgID(%s) of a removed message = found %v, %v; want nothing", c, ok, err)
		}
	}
	if m, ok, err := s.ByClientMsgID(context.Background(), "alice", "c4"); err != nil || !ok || m.MsgID != 4 {
		t.Errorf("ByClientMsgID(c4) = %d, %v, %v; want 4", m.MsgID, ok, err)
	}
	if _, ok, _ := s.Message(context.Background(), ab, 2); ok {
		t.Error("Message(ab, 2) is still there")
	}

	// A replay of the log saves the removed messages again: skipped.
	save(t, s, Msg(ab, 1), Msg(ab, 2), Msg(ab, 3), Msg(g1, 2))
	if got, _ := afterIDs(t, s, ab, 0, 10); !equalIDs(got, []domain.MsgID{4, 5}) {
		t.Errorf("ab after a replay = %v, want [4 5]", got)
	}
	if got, _ := afterIDs(t, s, g1, 0, 10); !equalIDs(got, []domain.MsgID{9}) {
		t.Errorf("g1 after a replay = %v, want [9]", got)
	}
	if fs := expired(t, s, at(3).Add(time.Millisecond), 100); len(fs) != 0 {
		t.Errorf("Expired again at the same cutoff = %+v, want nothing", fs)
	}
	// A floor never falls, and removing again removes nothing.
	if n := remove(t, s, store.Floor{Conversation: ab, Through: 1}); n != 0 {
		t.Errorf("Remove below the floor removed %d", n)
	}
	if g := goneThrough(t, s, ab); g != 3 {
		t.Errorf("GoneThrough(ab) after a lower floor = %d, want 3", g)
	}
	// A message newer than the floor still saves.
	save(t, s, Msg(ab, 6))
	if got, _ := afterIDs(t, s, ab, 3, 10); !equalIDs(got, []domain.MsgID{4, 5, 6}) {
		t.Errorf("ab after a new message = %v, want [4 5 6]", got)
	}
}

// A client message id of an edit names no message once the retention
// removed the message it changed: ByClientMsgID finds nothing, as for the
// message's own id, rather than failing (a send or an edit retried with
// it would be answered unavailable for ever).
func testRetentionForgetsEditKeys(t *testing.T, s store.Store) {
	m := Msg(ab, 1)
	save(t, s, m, Msg(ab, 4))
	amend(t, s, Edit(m, 2, "e1", "edited"))
	if _, ok, err := s.ByClientMsgID(context.Background(), "alice", "e1"); err != nil || !ok {
		t.Fatalf("ByClientMsgID(e1) before the retention = %v, %v; want the message", ok, err)
	}
	if n := remove(t, s, store.Floor{Conversation: ab, Through: 1}); n != 1 {
		t.Fatalf("Remove removed %d, want 1", n)
	}
	for _, c := range []string{"c1", "e1"} {
		if got, ok, err := s.ByClientMsgID(context.Background(), "alice", c); err != nil || ok {
			t.Errorf("ByClientMsgID(%s) of a removed message = %+v, found %v, %v; want nothing", c, got, ok, err)
		}
	}
}

// A message sent before the cutoff but after a later one (two gateways'
// clocks) stays until the later one is old too: what remains is a suffix.
func testRetentionKeepsASuffix(t *testing.T, s store.Store) {
	early := Msg(ab, 3)
	early.ServerTime = at(1)
	save(t, s, Msg(ab, 1), Msg(ab, 2), early, Msg(ab, 4))
	fs := expired(t, s, at(2), 100) // 1 is old, 2 is not, 3 is
	if len(fs) != 1 || fs[0] != (store.Floor{Conversation: ab, Through: 1, Messages: 1}) {
		t.Fatalf("Expired = %+v, want ab through 1", fs)
	}
	remove(t, s, fs...)
	if got, _ := afterIDs(t, s, ab, 0, 10); !equalIDs(got, []domain.MsgID{2, 3, 4}) {
		t.Errorf("after = %v, want [2 3 4]", got)
	}
	fs = expired(t, s, at(3), 100)
	if len(fs) != 1 || fs[0] != (store.Floor{Conversation: ab, Through: 3, Messages: 2}) {
		t.Fatalf("Expired later = %+v, want ab through 3", fs)
	}
}

// Each step reads and removes a bounded number of messages; steps repeated
// remove everything that is old, and nothing else.
func testRetentionIsBounded(t *testing.T, s store.Store) {
	convs := []domain.ConversationID{ab, g1, domain.GroupConversation("g2"), domain.DirectConversation("carol", "dave")}
	var batch []domain.Message
	for id := domain.MsgID(1); id <= 40; id++ {
		m := Msg(convs[id%4], id)
		m.Sender.Account = domain.AccountID("s" + string(rune('a'+id%4)))
		batch = append(batch, m)
	}
	save(t, s, batch...)
	cutoff := at(30) // 1..29 are old
	removed := 0
	for step := 0; step < 100; step++ {
		fs := expired(t, s, cutoff, 7)
		total := 0
		for _, f := range fs {
			total += f.Messages
		}
		if total > 7 {
			t.Fatalf("step %d: Expired found %d messages, want at most 7: %+v", step, total, fs)
		}
		if len(fs) == 0 {
			break
		}
		removed += remove(t, s, fs...)
	}
	if removed != 29 {
		t.Errorf("removed %d messages, want 29", removed)
	}
	for _, c := range convs {
		got, _ := afterIDs(t, s, c, 0, 100)
		for _, id := range got {
			if id < 30 {
				t.Errorf("%s still holds %d", c, id)
			}
		}
		if len(got) == 0 || got[0] >= 34 {
			t.Errorf("%s holds %v: a young message is gone", c, got)
		}
	}
}
