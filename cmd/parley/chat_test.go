package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// Two accounts chat 1:1: each message is pushed to the peer's devices and
// to the sender's other devices, in msgid order, each naming its
// predecessor; an offline device of the recipient later syncs every message
// exactly once in order.
func TestDirectChatPushAndOfflineSync(t *testing.T) {
	s := startServer(t, nil)
	alice := s.device("alice", "phone")
	aliceLaptop := s.device("alice", "laptop")
	bob := s.device("bob", "phone")
	ctx := ctxT(t)

	var want []string
	for i := 0; i < 10; i++ {
		from, to := alice, "bob"
		if i%3 == 2 {
			from, to = bob, "alice"
		}
		body := fmt.Sprintf("m%d", i)
		ack, err := from.c.Send(ctx, client.Target{Account: to}, fmt.Sprintf("cid-%d", i), "text", body)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if ack.Type != wire.TypeAck || ack.MsgID == 0 || ack.MessageID == "" || ack.Conversation != "d:alice:bob" || ack.ServerTime == 0 {
			t.Fatalf("bad ack %+v", ack)
		}
		want = append(want, body)
	}
	conv := "d:alice:bob"
	// bob's phone sent 3 of them itself, so it gets 7 pushes; alice's phone 3;
	// alice's laptop (never sent) all 10.
	bobPushes := bob.waitPushes(t, 7)
	alicePushes := alice.waitPushes(t, 3)
	laptopPushes := aliceLaptop.waitPushes(t, 10)
	for name, ps := range map[string][]wire.ServerFrame{"bob": bobPushes, "alice": alicePushes, "laptop": laptopPushes} {
		for i := 1; i < len(ps); i++ {
			if ps[i].Message.MsgID <= ps[i-1].Message.MsgID {
				t.Errorf("%s: pushes out of order: %d then %d", name, ps[i-1].Message.MsgID, ps[i].Message.MsgID)
			}
		}
	}
	for i := 1; i < len(laptopPushes); i++ {
		if laptopPushes[i].PrevMsgID != laptopPushes[i-1].Message.MsgID {
			t.Errorf("push %d names prev %d, want %d", i, laptopPushes[i].PrevMsgID, laptopPushes[i-1].Message.MsgID)
		}
	}
	assertLog(t, "alice laptop inbox", aliceLaptop.waitInbox(t, conv, 10), want)
	assertLog(t, "bob inbox", bob.waitInbox(t, conv, 10), want)

	// bob's tablet was offline the whole time.
	tablet := s.device("bob", "tablet")
	if err := tablet.inbox.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	assertLog(t, "bob tablet after sync", tablet.inbox.Messages(conv), want)
	// A second sync finds nothing new: nothing twice.
	if err := tablet.inbox.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	assertLog(t, "bob tablet after second sync", tablet.inbox.Messages(conv), want)
	assertLog(t, "history", history(t, tablet.c, conv), want)
}

// Sync answers from the cache when lastTime is recent and from the store
// otherwise, with the same messages, and pages with a cursor.
func TestSyncSourcesAndPaging(t *testing.T) {
	s := startServer(t, nil)
	alice := s.dial("alice", "phone")
	ctx := ctxT(t)
	var want []string
	for i := 0; i < 7; i++ {
		want = append(want, fmt.Sprint(i))
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("c", i), "", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	conv := "d:alice:bob"
	tests := []struct {
		name     string
		lastTime int64
		source   string
	}{
		{"never synced reads the store", 0, "store"},
		{"synced 8 days ago reads the store", time.Now().Add(-8 * 24 * time.Hour).UnixMilli(), "store"},
		{"synced an hour ago reads the cache", time.Now().Add(-time.Hour).UnixMilli(), "cache"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []wire.Message
			cur := wire.Cursor{LastTime: tc.lastTime}
			pages := 0
			for {
				f, err := alice.Sync(ctx, conv, cur, 3)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if pages == 1 && f.Source != tc.source {
					t.Errorf("source %q, want %q", f.Source, tc.source)
				}
				got = append(got, f.Messages...)
				cur = wire.Cursor{LastTime: tc.lastTime, LastMsgID: f.Next.LastMsgID}
				if !f.HasMore {
					break
				}
			}
			if pages != 3 {
				t.Errorf("%d pages of 3 for 7 messages, want 3", pages)
			}
			assertLog(t, tc.name, got, want)
		})
	}
}

// A 3-member group: every member gets every message; a non-member can
// neither send nor read; members can be added and removed.
func TestGroupChat(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice, bob, carol := s.device("alice", "phone"), s.device("bob", "phone"), s.device("carol", "phone")
	dave := s.dial("dave", "phone")

	g, err := alice.c.CreateGroup(ctx, "friends", "bob", "carol")
	if err != nil {
		t.Fatal(err)
	}
	if g.Owner != "alice" || fmt.Sprint(g.Members) != "[alice bob carol]" || g.Name != "friends" {
		t.Fatalf("created %+v", g)
	}
	conv := "g:" + g.Group
	var want []string
	for i, d := range []*device{alice, bob, carol, alice, carol} {
		body := fmt.Sprintf("g%d", i)
		want = append(want, body)
		if _, err := d.c.Send(ctx, client.Target{Group: g.Group}, fmt.Sprint("c", i), "text", body); err != nil {
			t.Fatal(err)
		}
	}
	for name, d := range map[string]*device{"alice": alice, "bob": bob, "carol": carol} {
		assertLog(t, name, d.finalLog(t, conv, len(want)), want)
	}

	_, err = dave.Send(ctx, client.Target{Group: g.Group}, "d1", "text", "let me in")
	if client.CodeOf(err) != wire.CodeNotMember {
		t.Errorf("non-member send: %v, want not_member", err)
	}
	_, err = dave.Sync(ctx, conv, wire.Cursor{}, 10)
	if client.CodeOf(err) != wire.CodeNotMember {
		t.Errorf("non-member sync: %v, want not_member", err)
	}
	if _, err := bob.c.RemoveMembers(ctx, g.Group, "carol"); client.CodeOf(err) != wire.CodeForbidden {
		t.Errorf("member removing another: %v, want forbidden", err)
	}
	if _, err := dave.AddMembers(ctx, g.Group, "dave"); client.CodeOf(err) != wire.CodeNotMember {
		t.Errorf("non-member adding itself: %v, want not_member", err)
	}
	g, err = bob.c.AddMembers(ctx, g.Group, "dave")
	if err != nil || fmt.Sprint(g.Members) != "[alice bob carol dave]" {
		t.Fatalf("add dave: %+v %v", g, err)
	}
	// Added members read the history and send at once (read-your-writes).
	assertLog(t, "dave history", history(t, dave, conv), want)
	if _, err := dave.Send(ctx, client.Target{Group: g.Group}, "d2", "text", "hi all"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "hi all")
	assertLog(t, "carol", carol.finalLog(t, conv, len(want)), want)

	if g, err = alice.c.RemoveMembers(ctx, g.Group, "carol"); err != nil || fmt.Sprint(g.Members) != "[alice bob dave]" {
		t.Fatalf("remove carol: %+v %v", g, err)
	}
	if _, err := carol.c.Send(ctx, client.Target{Group: g.Group}, "c9", "text", "still here?"); client.CodeOf(err) != wire.CodeNotMember {
		t.Errorf("removed member send: %v, want not_member", err)
	}
	groups, err := bob.c.Groups(ctx)
	if err != nil || len(groups) != 1 || groups[0].Group != g.Group {
		t.Errorf("bob's groups %+v %v", groups, err)
	}
	list, err := bob.c.Conversations(ctx, 0)
	if err != nil || len(list) != 1 || list[0].Conversation != conv || list[0].Kind != "group" {
		t.Errorf("bob's conversations %+v %v", list, err)
	}
}

// Several clients send into one group at once: every member's final log —
// pushes plus the syncs their gaps triggered — is identical, gap-free and
// equal to the history.
func TestConcurrentGroupSenders(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	names := []string{"ann", "ben", "cat", "dan"}
	devs := make([]*device, len(names))
	for i, n := range names {
		devs[i] = s.device(n, "phone")
	}
	g, err := devs[0].c.CreateGroup(ctx, "busy", names[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	const perSender = 40
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perSender; j++ {
				if _, err := d.c.Send(ctx, client.Target{Group: g.Group}, fmt.Sprintf("%d-%d", i, j), "text", fmt.Sprintf("%s-%d", names[i], j)); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	conv := "g:" + g.Group
	total := perSender * len(devs)
	want := history(t, devs[0].c, conv)
	if len(want) != total {
		t.Fatalf("history has %d messages, want %d", len(want), total)
	}
	wantBodies := make([]string, len(want))
	for i, m := range want {
		wantBodies[i] = m.Body
	}
	for i, d := range devs {
		got := d.finalLog(t, conv, total)
		assertLog(t, names[i], got, wantBodies)
		if n := len(d.waitPushes(t, total)); n != total {
			t.Errorf("%s: %d pushes, want one for each of the %d messages, its own too", names[i], n, total)
		}
		t.Logf("%s: %d gaps synced", names[i], d.inbox.Gaps)
	}
}

// A retry with the same client message id returns the original ack and
// makes no second message, even when the retries race.
func TestRetrySameClientMsgIDMakesOneMessage(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	first, err := alice.Send(ctx, client.Target{Account: "bob"}, "same", "text", "once")
	if err != nil {
		t.Fatal(err)
	}
	again, err := alice.Send(ctx, client.Target{Account: "bob"}, "same", "text", "once")
	if err != nil {
		t.Fatal(err)
	}
	if again.MsgID != first.MsgID || again.MessageID != first.MessageID || !again.Duplicate || first.Duplicate {
		t.Fatalf("retry ack %+v, first %+v", again, first)
	}
	var wg sync.WaitGroup
	acks := make([]wire.ServerFrame, 8)
	for i := range acks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[i], _ = alice.Send(ctx, client.Target{Account: "bob"}, "racing", "text", "race")
		}()
	}
	wg.Wait()
	for _, a := range acks {
		if a.MsgID != acks[0].MsgID || a.MsgID == 0 {
			t.Fatalf("racing retries got different acks: %+v", acks)
		}
	}
	// From another device of the same account, too.
	laptop := s.dial("alice", "laptop")
	fromLaptop, err := laptop.Send(ctx, client.Target{Account: "bob"}, "same", "text", "once")
	if err != nil || fromLaptop.MsgID != first.MsgID {
		t.Fatalf("retry from another device: %+v %v", fromLaptop, err)
	}
	// A resend marked as a retry finds the original, and one of a message
	// that never reached the log sends it.
	resent, err := laptop.Resend(ctx, client.Target{Account: "bob"}, "same", "text", "once")
	if err != nil || resent.MsgID != first.MsgID || !resent.Duplicate {
		t.Fatalf("resend: %+v %v", resent, err)
	}
	if fresh, err := laptop.Resend(ctx, client.Target{Account: "bob"}, "lost", "text", "lost ack"); err != nil || fresh.Duplicate {
		t.Fatalf("resend of a new message: %+v %v", fresh, err)
	}
	assertLog(t, "history", history(t, alice, "d:alice:bob"), []string{"once", "race", "lost ack"})
}

// The server is stopped and started on the same data dir: every message and
// group is still there, msgids keep increasing, and a retry of a message
// sent before the restart is still recognized.
func TestRestartKeepsEverything(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	g, err := alice.CreateGroup(ctx, "team", "bob")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var last int64
	for i := 0; i < 20; i++ {
		want = append(want, fmt.Sprint("before-", i))
		ack, err := alice.Send(ctx, client.Target{Group: g.Group}, fmt.Sprint("c", i), "", want[i])
		if err != nil {
			t.Fatal(err)
		}
		last = ack.MsgID
	}
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "direct", "", "hello bob"); err != nil {
		t.Fatal(err)
	}
	alice.Close()
	s.restart()

	bob := s.dial("bob", "phone")
	conv := "g:" + g.Group
	assertLog(t, "group after restart", history(t, bob, conv), want)
	assertLog(t, "direct after restart", history(t, bob, "d:alice:bob"), []string{"hello bob"})
	ack, err := bob.Send(ctx, client.Target{Group: g.Group}, "after", "", "after restart")
	if err != nil {
		t.Fatal(err)
	}
	if ack.MsgID <= last {
		t.Errorf("msgid after restart %d is not above %d", ack.MsgID, last)
	}
	alice = s.dial("alice", "phone")
	dup, err := alice.Send(ctx, client.Target{Group: g.Group}, "c3", "", "before-3")
	if err != nil || !dup.Duplicate {
		t.Errorf("retry across restart: %+v %v", dup, err)
	}
	assertLog(t, "group at the end", history(t, bob, conv), append(want, "after restart"))
}

// A used client message id is found in the history once the process's
// record of recent acks has forgotten it: the resend, to another
// recipient, gets the original ack and sends nothing.
func TestUsedClientMsgIDIsFoundInTheStore(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	first, err := alice.Send(ctx, client.Target{Account: "bob"}, "once", "", "only once")
	if err != nil {
		t.Fatal(err)
	}
	assertLog(t, "before", history(t, alice, "d:alice:bob"), []string{"only once"}) // the store holds it now
	s.n.Service().SweepIdempotency(0)
	again, err := alice.Do(ctx, wire.Request{Type: wire.TypeSend, To: "carol", ClientMsgID: "once", Body: "a second message"})
	if err != nil {
		t.Fatal(err)
	}
	if again.MsgID != first.MsgID || !again.Duplicate || again.Conversation != "d:alice:bob" {
		t.Fatalf("resend got %+v, want the original ack %+v", again, first)
	}
	assertLog(t, "carol's side", history(t, alice, "d:alice:carol"), nil)
}

// The cache answers only ranges it holds whole (I3): messages older than
// its retention were never cached, so a sync from before them is answered
// by the store — all of them — even with a recent lastTime, while a sync
// after them may come from the cache.
func TestCacheNeverAnswersARangeItDoesNotHold(t *testing.T) {
	var offset atomic.Int64 // how far the server's clock is behind
	s := startServer(t, func(c *node.Config) {
		c.API.Now = func() time.Time { return time.Now().Add(-time.Duration(offset.Load())) }
	})
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	offset.Store(int64(8 * 24 * time.Hour))
	var lastOld int64
	for i := 0; i < 3; i++ {
		ack, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("old", i), "", fmt.Sprint("old-", i))
		if err != nil {
			t.Fatal(err)
		}
		lastOld = ack.MsgID
	}
	offset.Store(0)
	for i := 0; i < 2; i++ {
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("new", i), "", fmt.Sprint("new-", i)); err != nil {
			t.Fatal(err)
		}
	}
	recent := time.Now().Add(-time.Hour).UnixMilli()
	f, err := alice.Sync(ctx, "d:alice:bob", wire.Cursor{LastTime: recent}, 50)
	if err != nil {
		t.Fatal(err)
	}
	if f.Source != "store" {
		t.Errorf("a range the cache does not hold was answered by %q", f.Source)
	}
	assertLog(t, "from the start", f.Messages, []string{"old-0", "old-1", "old-2", "new-0", "new-1"})
	f, err = alice.Sync(ctx, "d:alice:bob", wire.Cursor{LastTime: recent, LastMsgID: lastOld}, 50)
	if err != nil {
		t.Fatal(err)
	}
	if f.Source != "cache" {
		t.Errorf("a range the cache holds was answered by %q", f.Source)
	}
	assertLog(t, "after the old ones", f.Messages, []string{"new-0", "new-1"})
}
