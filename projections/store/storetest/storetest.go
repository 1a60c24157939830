// Package storetest is the contract every store.Store adapter passes. An
// adapter's test calls Run with a constructor that returns an empty store.
package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/store"
)

var (
	ab = domain.DirectConversation("alice", "bob")
	g1 = domain.GroupConversation("g1")
)

// Run runs the contract. newStore returns an empty store for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"SaveIsIdempotent", testSaveIsIdempotent},
		{"SaveNothing", testSaveNothing},
		{"SaveOutOfOrder", testSaveOutOfOrder},
		{"SaveBatch", testSaveBatch},
		{"AfterPaging", testAfterPaging},
		{"AfterWalk", testAfterWalk},
		{"AfterReturnsACopy", testAfterReturnsACopy},
		{"ConversationsApart", testConversationsApart},
		{"RoundTrip", testRoundTrip},
		{"LargeBodies", testLargeBodies},
		{"ByClientMsgID", testByClientMsgID},
		{"ByClientMsgIDSkippedMessageClaimsNothing", testByClientMsgIDSkipped},
		{"Concurrent", testConcurrent},
		{"EditKeepsTheLatestBody", testEdit},
		{"DeleteLeavesATombstone", testDelete},
		{"AmendWhatIsNotHeld", testAmendUnknown},
		{"AmendInOneCallWithItsMessage", testAmendAfterSaveInBatches},
		{"RetentionRemovesTheOldRun", testRetentionRemovesTheOldRun},
		{"RetentionKeepsASuffix", testRetentionKeepsASuffix},
		{"RetentionIsBounded", testRetentionIsBounded},
		{"RetentionForgetsEditKeys", testRetentionForgetsEditKeys},
		{"EraseLeavesTombstones", testErase},
		{"EraseRevisesTombstonesThatCameErased", testEraseErasedArrivals},
		{"ChangesAfterACursor", testChanges},
		{"ChangesOfAnErasure", testChangesOfAnErasure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore(t)) })
	}
}

// Msg builds a message of conv at msgid, sent by alice from her phone with
// client id c<msgid>, at msgid seconds after the epoch.
func Msg(conv domain.ConversationID, id domain.MsgID) domain.Message {
	return domain.Message{
		ID: uuid.New(), MsgID: id, ClientMsgID: fmt.Sprintf("c%d", id),
		Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: conv,
		Kind: "text", Body: fmt.Sprint("body ", id), ServerTime: time.UnixMilli(int64(id) * 1000),
	}
}

// IDs are the msgids of ms, never nil.
func IDs(ms []domain.Message) []domain.MsgID {
	out := []domain.MsgID{}
	for _, m := range ms {
		out = append(out, m.MsgID)
	}
	return out
}

// normal makes equal messages compare equal: time zones and monotonic
// readings are not part of a message.
func normal(m domain.Message) domain.Message {
	m.ServerTime = m.ServerTime.UTC()
	if !m.EditedAt.IsZero() {
		m.EditedAt = m.EditedAt.UTC()
	}
	return m
}

func sameMessages(got, want []domain.Message) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if normal(got[i]) != normal(want[i]) {
			return false
		}
	}
	return true
}

func save(t *testing.T, s store.Store, msgs ...domain.Message) {
	t.Helper()
	if err := s.Save(context.Background(), msgs...); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func after(t *testing.T, s store.Store, conv domain.ConversationID, a domain.MsgID, limit int) ([]domain.Message, bool) {
	t.Helper()
	ms, more, err := s.After(context.Background(), conv, a, limit)
	if err != nil {
		t.Fatalf("After(%s, %d, %d): %v", conv, a, limit, err)
	}
	return ms, more
}

func afterIDs(t *testing.T, s store.Store, conv domain.ConversationID, a domain.MsgID, limit int) ([]domain.MsgID, bool) {
	t.Helper()
	ms, more := after(t, s, conv, a, limit)
	return IDs(ms), more
}

func equalIDs(a, b []domain.MsgID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testSaveIsIdempotent(t *testing.T, s store.Store) {
	m1, m2 := Msg(ab, 10), Msg(ab, 20)
	sameIDOtherPlace := m1
	sameIDOtherPlace.MsgID = 30
	samePlaceOtherID := Msg(ab, 20)
	samePlaceOtherID.Body = "impostor"
	m3 := Msg(ab, 40)

	// Cases run in sequence on one store, each checked against the history
	// so far: a second store per case would cost a schema each.
	steps := []struct {
		name  string
		batch []domain.Message
		want  []domain.Message
	}{
		{"save once", []domain.Message{m1, m2}, []domain.Message{m1, m2}},
		{"save twice", []domain.Message{m1, m2}, []domain.Message{m1, m2}},
		{"duplicate inside one call", []domain.Message{m3, m3, m1}, []domain.Message{m1, m2, m3}},
		{"same message id at another msgid is skipped", []domain.Message{sameIDOtherPlace}, []domain.Message{m1, m2, m3}},
		{"same msgid with another message id is skipped", []domain.Message{samePlaceOtherID}, []domain.Message{m1, m2, m3}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			save(t, s, st.batch...)
			got, more := after(t, s, ab, 0, 100)
			if more {
				t.Errorf("more = true")
			}
			if !sameMessages(got, st.want) {
				t.Errorf("After = %v (%+v), want %v", IDs(got), got, IDs(st.want))
			}
		})
	}
	t.Run("first of a batch wins a msgid", func(t *testing.T) {
		first, second := Msg(g1, 7), Msg(g1, 7)
		second.Body = "second"
		save(t, s, first, second)
		if got, _ := after(t, s, g1, 0, 10); !sameMessages(got, []domain.Message{first}) {
			t.Errorf("After = %+v, want the first", got)
		}
	})
}

func testSaveNothing(t *testing.T, s store.Store) {
	save(t, s)
	if got, more := afterIDs(t, s, ab, 0, 10); len(got) != 0 || more {
		t.Errorf("After = %v more %v, want nothing", got, more)
	}
}

func testSaveOutOfOrder(t *testing.T, s store.Store) {
	for _, id := range []domain.MsgID{50, 10, 30, 20, 40, 10, 60, 5} {
		save(t, s, Msg(ab, id))
	}
	save(t, s, Msg(ab, 90), Msg(ab, 70), Msg(ab, 80)) // and inside one batch
	if got, _ := afterIDs(t, s, ab, 0, 100); !equalIDs(got, []domain.MsgID{5, 10, 20, 30, 40, 50, 60, 70, 80, 90}) {
		t.Errorf("After = %v, want msgid order", got)
	}
}

func testSaveBatch(t *testing.T, s store.Store) {
	var batch []domain.Message
	for i := domain.MsgID(1); i <= 500; i++ {
		conv := ab
		if i%2 == 0 {
			conv = g1
		}
		batch = append(batch, Msg(conv, i))
	}
	save(t, s, batch...)
	for _, conv := range []domain.ConversationID{ab, g1} {
		got, more := after(t, s, conv, 0, 1000)
		if len(got) != 250 || more {
			t.Errorf("%s holds %d messages (more %v), want 250", conv, len(got), more)
		}
	}
}

func testAfterPaging(t *testing.T, s store.Store) {
	// msgids with gaps, as the log gives them; another conversation beside.
	for _, id := range []domain.MsgID{2, 4, 6, 8, 10} {
		save(t, s, Msg(ab, id), Msg(g1, id+1))
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
		{"limit zero at the end", ab, 10, 0, []domain.MsgID{}, false},
		{"negative after", ab, -1, 1, []domain.MsgID{2}, true},
		{"other conversation is separate", g1, 0, 10, []domain.MsgID{3, 5, 7, 9, 11}, false},
		{"unknown conversation", domain.GroupConversation("nope"), 0, 10, []domain.MsgID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more := afterIDs(t, s, tt.conv, tt.after, tt.limit)
			if !equalIDs(got, tt.want) || more != tt.wantMore {
				t.Errorf("After(%d, %d) = %v more %v, want %v more %v", tt.after, tt.limit, got, more, tt.want, tt.wantMore)
			}
		})
	}
}

// Paging through with the last msgid of each page yields every message once.
func testAfterWalk(t *testing.T, s store.Store) {
	var want []domain.MsgID
	for id := domain.MsgID(1); id <= 23; id++ {
		save(t, s, Msg(ab, id*3))
		want = append(want, id*3)
	}
	var got []domain.MsgID
	cursor := domain.MsgID(0)
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		page, more := afterIDs(t, s, ab, cursor, 5)
		got = append(got, page...)
		if !more {
			break
		}
		cursor = page[len(page)-1]
	}
	if !equalIDs(got, want) {
		t.Errorf("walk = %v, want %v", got, want)
	}
}

// After returns a copy: a caller changing it cannot corrupt the store.
func testAfterReturnsACopy(t *testing.T, s store.Store) {
	save(t, s, Msg(ab, 1), Msg(ab, 2))
	page, _ := after(t, s, ab, 0, 10)
	page[0].Body = "changed"
	page[1] = Msg(ab, 99)
	again, _ := after(t, s, ab, 0, 10)
	if got := IDs(again); !equalIDs(got, []domain.MsgID{1, 2}) || again[0].Body != "body 1" {
		t.Errorf("store changed through a returned page: %+v", again)
	}
}

// One conversation per account pair in either direction, one per group;
// nothing leaks between them, even where the names coincide.
func testConversationsApart(t *testing.T, s store.Store) {
	convs := []domain.ConversationID{
		domain.DirectConversation("alice", "bob"),
		domain.DirectConversation("alice", "carol"),
		domain.DirectConversation("alice", "alice"), // notes to self
		domain.DirectConversation("bob", "carol"),
		domain.GroupConversation("alice"),
		domain.GroupConversation("bob"),
		domain.GroupConversation("g1"),
	}
	want := map[domain.ConversationID][]domain.Message{}
	for i, conv := range convs {
		for _, id := range []domain.MsgID{1, 2, 3} { // the same msgids everywhere
			m := Msg(conv, id)
			m.ClientMsgID = fmt.Sprintf("c%d-%d", i, id)
			m.Body = conv.String()
			save(t, s, m)
			want[conv] = append(want[conv], m)
		}
	}
	for _, conv := range convs {
		t.Run(conv.String(), func(t *testing.T) {
			got, more := after(t, s, conv, 0, 10)
			if more || !sameMessages(got, want[conv]) {
				t.Errorf("After = %+v more %v, want %+v", got, more, want[conv])
			}
		})
	}
	t.Run("either direction", func(t *testing.T) {
		got, _ := after(t, s, domain.DirectConversation("bob", "alice"), 0, 10)
		if !sameMessages(got, want[ab]) {
			t.Errorf("bob-alice = %+v, want alice-bob's", got)
		}
	})
}

// Every field survives storage.
func testRoundTrip(t *testing.T, s store.Store) {
	direct := domain.Message{
		ID: uuid.New(), MsgID: 1<<48 | 12345, ClientMsgID: "client-1.x@y_z",
		Sender:       domain.Sender{Account: "bob", Device: "desktop-2"},
		Conversation: ab, Kind: "image/png", Body: `{"url":"https://x"}`,
		ServerTime: time.Date(2031, 2, 3, 4, 5, 6, 789_000_000, time.FixedZone("x", 3600)),
	}
	group := domain.Message{
		ID: uuid.New(), MsgID: 31<<48 | (1<<48 - 1), ClientMsgID: "k",
		Sender:       domain.Sender{Account: "carol", Device: "web"},
		Conversation: g1, Kind: "text", Body: "",
		ServerTime: time.UnixMilli(1),
	}
	save(t, s, direct, group)
	for _, want := range []domain.Message{direct, group} {
		got, _ := after(t, s, want.Conversation, 0, 10)
		if !sameMessages(got, []domain.Message{want}) {
			t.Errorf("After(%s) = %+v, want %+v", want.Conversation, got, want)
		}
		byClient, ok, err := s.ByClientMsgID(context.Background(), want.Sender.Account, want.ClientMsgID)
		if err != nil || !ok || normal(byClient) != normal(want) {
			t.Errorf("ByClientMsgID = %+v, %v, %v; want %+v", byClient, ok, err, want)
		}
	}
}

func testLargeBodies(t *testing.T, s store.Store) {
	unicode := strings.Repeat("é中😀", domain.MaxBodyBytes/9) // 9 bytes a repeat
	unicode += strings.Repeat("x", domain.MaxBodyBytes-len(unicode))
	bodies := []struct {
		name string
		body string
	}{
		{"16 KiB ascii", strings.Repeat("a", domain.MaxBodyBytes)},
		{"16 KiB unicode", unicode},
		{"nul bytes", "a\x00b\x00"},
		{"control characters and quotes", "\t\r\n'\"\\%_"},
		{"empty", ""},
	}
	for i, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			m := Msg(ab, domain.MsgID(i+1))
			m.Body = b.body
			save(t, s, m)
			got, _ := after(t, s, ab, m.MsgID-1, 1)
			if len(got) != 1 || got[0].Body != b.body {
				t.Fatalf("body of %d bytes did not survive (got %d messages)", len(b.body), len(got))
			}
		})
	}
}

func testByClientMsgID(t *testing.T, s store.Store) {
	first := Msg(ab, 10)
	first.ClientMsgID = "k1"
	retry := Msg(ab, 20) // a second message with the same key: the first wins
	retry.ClientMsgID = "k1"
	bobs := Msg(ab, 30)
	bobs.Sender = domain.Sender{Account: "bob", Device: "web"}
	bobs.ClientMsgID = "k1"
	inGroup := Msg(g1, 40)
	inGroup.ClientMsgID = "k2"
	laterRetry := Msg(g1, 50) // same key again in a later call, another conversation
	laterRetry.ClientMsgID = "k1"
	save(t, s, first, retry, bobs, inGroup)
	save(t, s, laterRetry)

	tests := []struct {
		name    string
		account domain.AccountID
		key     string
		want    *domain.Message
	}{
		{"found", "alice", "k1", &first},
		{"keyed per account", "bob", "k1", &bobs},
		{"group message", "alice", "k2", &inGroup},
		{"unknown key", "alice", "k3", nil},
		{"unknown account", "carol", "k1", nil},
		{"case matters", "alice", "K1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok, err := s.ByClientMsgID(context.Background(), tt.account, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tt.want != nil)
			}
			if tt.want != nil && normal(m) != normal(*tt.want) {
				t.Errorf("ByClientMsgID = %+v, want %+v", m, *tt.want)
			}
		})
	}
	// Concurrent lookups, found and not, of the same and other keys, may
	// be answered together (a send looks its key up on every attempt):
	// each caller still gets the answer to its own key.
	t.Run("all at once", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 20*len(tests))
		for range 20 {
			for _, tt := range tests {
				wg.Go(func() {
					m, ok, err := s.ByClientMsgID(context.Background(), tt.account, tt.key)
					switch {
					case err != nil:
						errs <- fmt.Sprintf("%s: %v", tt.name, err)
					case ok != (tt.want != nil):
						errs <- fmt.Sprintf("%s: ok = %v", tt.name, ok)
					case ok && normal(m) != normal(*tt.want):
						errs <- fmt.Sprintf("%s: %+v, want %+v", tt.name, m, *tt.want)
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

// A message skipped as a duplicate does not take its client message id:
// the key stays free for the message that will be stored with it.
func testByClientMsgIDSkipped(t *testing.T, s store.Store) {
	m := Msg(ab, 10)
	save(t, s, m)
	dupPlace := Msg(ab, 10)
	dupPlace.ClientMsgID = "other-place"
	dupID := m
	dupID.MsgID, dupID.ClientMsgID = 11, "other-id"
	save(t, s, dupPlace, dupID)
	for _, key := range []string{"other-place", "other-id"} {
		if got, ok, err := s.ByClientMsgID(context.Background(), "alice", key); err != nil || ok {
			t.Errorf("ByClientMsgID(%s) = %+v, %v, %v; want not found", key, got, ok, err)
		}
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers, each = 4, 50
	shared := make([]domain.Message, 20) // every worker saves these too
	for i := range shared {
		shared[i] = Msg(g1, domain.MsgID(i+1))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := s.Save(ctx, Msg(ab, domain.MsgID(w*1000+i))); err != nil {
					errs <- err
					return
				}
				if err := s.Save(ctx, shared[i%len(shared)]); err != nil {
					errs <- err
					return
				}
				if _, _, err := s.After(ctx, ab, 0, 10); err != nil {
					errs <- err
					return
				}
				if _, _, err := s.ByClientMsgID(ctx, "alice", "c1"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, _ := afterIDs(t, s, ab, -1, 1000); len(got) != workers*each {
		t.Errorf("stored %d messages, want %d", len(got), workers*each)
	}
	if got, _ := after(t, s, g1, 0, 1000); !sameMessages(got, shared) {
		t.Errorf("shared messages stored as %v, want each once", IDs(got))
	}
}

// testErase: an erasure tombstones the account's messages up to its time
// in the conversations it names, and nothing else; doing it again changes
// nothing.
func testErase(t *testing.T, s store.Store) {
	ctx := context.Background()
	ab, ac := domain.DirectConversation("alice", "bob"), domain.DirectConversation("alice", "carol")
	bobs := Msg(ab, 2)
	bobs.Sender = domain.Sender{Account: "bob", Device: "web"}
	later := Msg(ab, 100) // sent after the erasure
	save(t, s, Msg(ab, 1), bobs, Msg(ab, 3), later, Msg(ac, 1))
	e := domain.Erasure{Account: "alice", At: time.UnixMilli(50_000)}
	onlyAB := func(c domain.ConversationID) bool { return c == ab }
	for round := range 2 {
		if err := s.Erase(ctx, e, onlyAB); err != nil {
			t.Fatal(err)
		}
		got, _ := after(t, s, ab, 0, 10)
		if len(got) != 4 {
			t.Fatalf("round %d: %d messages, want 4", round, len(got))
		}
		for _, m := range got {
			erased := m.Sender.Account == "alice" && m.MsgID != 100
			if erased && (!m.Deleted || m.Body != "") {
				t.Errorf("round %d: alice's message %d = %+v, want a tombstone", round, m.MsgID, m)
			}
			if !erased && (m.Deleted || m.Body != fmt.Sprint("body ", m.MsgID)) {
				t.Errorf("round %d: message %d of %s = %+v, want it untouched", round, m.MsgID, m.Sender.Account, m)
			}
			if erased && (m.ID == uuid.Nil || m.ClientMsgID == "" || m.ServerTime.IsZero()) {
				t.Errorf("round %d: the tombstone lost its ids or time: %+v", round, m)
			}
		}
	}
	if err := s.Erase(ctx, e, func(domain.ConversationID) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if got, _ := after(t, s, ac, 0, 10); len(got) != 1 || !got[0].Deleted || got[0].Body != "" {
		t.Errorf("after erasing everywhere, %s holds %+v", ac, got)
	}
	if m, ok, err := s.ByClientMsgID(ctx, "alice", "c1"); err != nil || !ok || !m.Deleted {
		t.Errorf("ByClientMsgID after the erasure = %+v, %v, %v; want the tombstone", m, ok, err)
	}
}

// testEraseErasedArrivals: a message whose body came off the log erased (a
// replay after its sender's erasure) is a tombstone nothing has changed
// yet, at revision 0; the erasure gives it its revision, as it does a
// message it tombstones, so that a sync with changes reports both alike.
// A message its sender deleted keeps the deletion's revision, and erasing
// again changes nothing.
func testEraseErasedArrivals(t *testing.T, s store.Store) {
	ctx := context.Background()
	ab := domain.DirectConversation("alice", "bob")
	arrivedErased := Msg(ab, 1)
	arrivedErased.Deleted, arrivedErased.Body = true, ""
	// Message 5 was deleted before the erasure: live, the deletion gave
	// it its revision (6); replayed, it came erased, and the deletion must
	// give it the same.
	deletedThenErased := Msg(ab, 5)
	deletedThenErased.Deleted, deletedThenErased.Body = true, ""
	save(t, s, arrivedErased, Msg(ab, 2), Msg(ab, 3), deletedThenErased)
	for _, d := range []struct{ id, rev domain.MsgID }{{2, 4}, {5, 6}} {
		del, err := domain.NewDelete(domain.Sender{Account: "alice", Device: "phone"}, ab, d.id)
		if err != nil {
			t.Fatal(err)
		}
		del.At, del.Revision = time.UnixMilli(int64(d.rev)*1000), d.rev
		if err := s.Amend(ctx, del); err != nil {
			t.Fatal(err)
		}
	}
	all := func(domain.ConversationID) bool { return true }
	for round, rev := range []domain.MsgID{10, 20} {
		if err := s.Erase(ctx, domain.Erasure{Account: "alice", At: time.UnixMilli(50_000), Revision: rev}, all); err != nil {
			t.Fatal(err)
		}
		changes, _, err := s.Changes(ctx, ab, 3, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 3 {
			t.Errorf("round %d: %d changes after 3, want 1, 2 and 3", round, len(changes))
		}
		got := map[domain.MsgID]domain.MsgID{}
		for _, id := range []domain.MsgID{1, 2, 3, 5} {
			m, ok, err := s.Message(ctx, ab, id)
			if err != nil || !ok {
				t.Fatalf("message %d: %v %v", id, ok, err)
			}
			got[m.MsgID] = m.Revision
			if !m.Deleted || m.Body != "" {
				t.Errorf("round %d: message %+v, want a tombstone", round, m)
			}
		}
		if want := map[domain.MsgID]domain.MsgID{1: 10, 2: 4, 3: 10, 5: 6}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: revisions of the changes %v, want %v", round, got, want)
		}
	}
}
