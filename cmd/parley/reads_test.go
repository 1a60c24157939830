package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"github.com/parley-chat/parley/projections/conversations/conversationstest"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// Read state end to end, on one node and on two gateways of a cluster.
func TestReadStateEmbedded(t *testing.T) {
	srv := startServer(t, nil)
	readScenario(t, srv, srv)
}

func TestReadStateCluster(t *testing.T) {
	c := startCluster(t)
	gw1, gw2 := c.instance(gatewayOnly), c.instance(gatewayOnly)
	c.instance(projectorOnly)
	readScenario(t, gw1, gw2)
}

// unreadOf is the conversation list of c as conversation → entry.
func unreadOf(t *testing.T, c *client.Client) map[string]wire.ConversationInfo {
	t.Helper()
	list, err := c.Conversations(ctxT(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]wire.ConversationInfo{}
	for _, e := range list {
		out[e.Conversation] = e
	}
	return out
}

// wantUnread checks the unread count and cursor of conv in c's list.
func wantUnread(t *testing.T, who string, c *client.Client, conv string, unread, readMsgID int64) {
	t.Helper()
	e, ok := unreadOf(t, c)[conv]
	if !ok {
		t.Fatalf("%s: %s is not listed", who, conv)
	}
	if e.Unread != unread || e.ReadMsgID != readMsgID {
		t.Errorf("%s: %s has unread %d, readMsgId %d; want %d, %d", who, conv, e.Unread, e.ReadMsgID, unread, readMsgID)
	}
}

// readPushes are the receipts d got for conv.
func readPushes(d *device, conv string) []wire.ServerFrame {
	var out []wire.ServerFrame
	for _, f := range d.received() {
		if f.Type == wire.TypeReadPush && f.Conversation == conv {
			out = append(out, f)
		}
	}
	return out
}

// waitReceipt waits until d got a receipt of account's cursor in conv at msgID.
func waitReceipt(t *testing.T, who string, d *device, conv, account string, msgID int64) {
	t.Helper()
	waitFor(t, func() bool {
		return slices.ContainsFunc(readPushes(d, conv), func(f wire.ServerFrame) bool {
			return f.Account == account && f.MsgID == msgID
		})
	})
}

// readScenario: mixed 1:1 and group traffic with some devices offline,
// exact unread counts, receipts to the reader's other device and to the
// sender, concurrent reads that never move a cursor back, readers, and
// the bad-input rows of read and readers. Devices are spread over a and b.
func readScenario(t *testing.T, a, b *server) {
	ctx := ctxT(t)
	alicePhone, aliceLaptop := a.device("alice", "phone"), b.device("alice", "laptop")
	bobPhone, carol := a.device("bob", "phone"), b.device("carol", "phone")
	// bob's tablet and dave stay offline until the counts are checked.

	direct := "d:alice:bob"
	send := func(d *device, to client.Target, body string) int64 {
		t.Helper()
		ack, err := d.c.Send(ctx, to, body, "", body)
		if err != nil {
			t.Fatal(err)
		}
		return ack.MsgID
	}
	toBob, toAlice := client.Target{Account: "bob"}, client.Target{Account: "alice"}
	var dm []int64
	dm = append(dm, send(alicePhone, toBob, "a1"), send(bobPhone, toAlice, "b1"), send(aliceLaptop, toBob, "a2"),
		send(alicePhone, toBob, "a3"), send(bobPhone, toAlice, "b2"))
	g, err := alicePhone.c.CreateGroup(ctx, "team", "bob", "carol", "dave")
	if err != nil {
		t.Fatal(err)
	}
	conv := "g:" + g.Group
	toG := client.Target{Group: g.Group}
	var gm []int64
	gm = append(gm, send(alicePhone, toG, "ga1"), send(carol, toG, "gc1"), send(carol, toG, "gc2"),
		send(bobPhone, toG, "gb1"), send(aliceLaptop, toG, "ga2"), send(carol, toG, "gc3"))

	// Nothing read: every message of the others is unread, for devices
	// that were online and for those that were not.
	wantUnread(t, "alice", alicePhone.c, direct, 2, 0)
	wantUnread(t, "alice", aliceLaptop.c, conv, 4, 0)
	bobTablet := b.device("bob", "tablet")
	wantUnread(t, "bob's tablet", bobTablet.c, direct, 3, 0)
	wantUnread(t, "bob's tablet", bobTablet.c, conv, 5, 0)
	dave := a.dial("dave", "phone")
	wantUnread(t, "dave", dave, conv, 6, 0)

	// bob reads the direct conversation on his phone: the reply has the
	// new cursor, his tablet's badge clears by a push, alice's devices
	// see the receipt, and the phone gets none of its own.
	st, err := bobPhone.c.Read(ctx, direct, dm[4])
	if err != nil {
		t.Fatal(err)
	}
	if st.Type != wire.TypeReadState || st.ReadMsgID != dm[4] || st.Unread != 0 {
		t.Errorf("read reply = %+v, want read_state at %d with nothing unread", st, dm[4])
	}
	waitReceipt(t, "bob's tablet", bobTablet, direct, "bob", dm[4])
	waitReceipt(t, "alice's phone", alicePhone, direct, "bob", dm[4])
	waitReceipt(t, "alice's laptop", aliceLaptop, direct, "bob", dm[4])
	wantUnread(t, "bob's tablet", bobTablet.c, direct, 0, dm[4])
	waitFor(t, func() bool { return aliceLaptop.inbox.ReadBy(direct, "bob") == dm[4] }) // the Go client's read ticks
	rs, err := alicePhone.c.Readers(ctx, direct, dm[3])
	if err != nil {
		t.Fatal(err)
	}
	if rs.Type != wire.TypeReaderCount || rs.Count != 1 || rs.Of != 1 || !slices.Equal(rs.Accounts, []string{"bob"}) {
		t.Errorf("readers = %+v, want bob of 1", rs)
	}

	// A read up to an older message counts exactly what follows it; the
	// same read again changes nothing.
	for range 2 {
		st, err = dave.Read(ctx, conv, gm[2])
		if err != nil {
			t.Fatal(err)
		}
		if st.ReadMsgID != gm[2] || st.Unread != 3 {
			t.Errorf("dave read up to gc2: %+v, want 3 unread", st)
		}
	}
	wantUnread(t, "dave", dave, conv, 3, gm[2])
	waitReceipt(t, "carol", carol, conv, "dave", gm[2]) // a small group sees receipts
	rs, err = carol.c.Readers(ctx, conv, gm[2])
	if err != nil {
		t.Fatal(err)
	}
	if rs.Count != 1 || rs.Of != 3 || !slices.Equal(rs.Accounts, []string{"dave"}) {
		t.Errorf("readers of gc2 = %+v, want dave of 3", rs)
	}

	// alice's two devices read the group concurrently, in opposite
	// orders: the cursor ends at the highest, and never went back.
	var wg sync.WaitGroup
	for i, d := range []*device{alicePhone, aliceLaptop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := slices.Clone(gm)
			if i == 1 {
				slices.Reverse(order)
			}
			last := int64(0)
			for _, id := range order {
				st, err := d.c.Read(ctx, conv, id)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if st.ReadMsgID < last || st.ReadMsgID < id {
					t.Errorf("device %d: cursor %d after reading %d (was %d)", i, st.ReadMsgID, id, last)
				}
				last = st.ReadMsgID
			}
		}()
	}
	wg.Wait()
	wantUnread(t, "alice", alicePhone.c, conv, 0, gm[5])
	waitReceipt(t, "carol", carol, conv, "alice", gm[5])
	waitFor(t, func() bool { return carol.inbox.ReadBy(conv, "alice") == gm[5] })
	top := int64(0)
	for _, f := range readPushes(carol, conv) {
		if f.Account != "alice" {
			continue
		}
		if f.MsgID < top {
			t.Errorf("carol got alice's cursor back from %d to %d", top, f.MsgID)
		}
		top = f.MsgID
	}

	// New traffic after a read counts again; own messages do not.
	send(carol, toG, "gc4")
	send(alicePhone, toG, "ga3")
	wantUnread(t, "alice", aliceLaptop.c, conv, 1, gm[5])
	wantUnread(t, "dave", dave, conv, 5, gm[2])

	// Bad input.
	tooFar := gm[len(gm)-1] + 1_000_000
	rows := []struct {
		name string
		c    *client.Client
		req  wire.Request
		want wire.Code
	}{
		{"unknown group", alicePhone.c, wire.Request{Type: wire.TypeRead, Conversation: "g:nosuchgroup", MsgID: gm[0]}, wire.CodeNotFound},
		{"direct conversation without messages", alicePhone.c, wire.Request{Type: wire.TypeRead, Conversation: "d:alice:zed", MsgID: 1}, wire.CodeInvalidArgument},
		{"not a member", bobTablet.c, wire.Request{Type: wire.TypeRead, Conversation: "g:nosuchgroup", MsgID: 1}, wire.CodeNotFound},
		{"not a member of a group", a.dial("erin", "phone"), wire.Request{Type: wire.TypeRead, Conversation: conv, MsgID: gm[0]}, wire.CodeNotMember},
		{"another's direct conversation", carol.c, wire.Request{Type: wire.TypeRead, Conversation: direct, MsgID: dm[0]}, wire.CodeForbidden},
		{"msgId past the newest", alicePhone.c, wire.Request{Type: wire.TypeRead, Conversation: direct, MsgID: tooFar}, wire.CodeInvalidArgument},
		{"msgId zero", alicePhone.c, wire.Request{Type: wire.TypeRead, Conversation: direct}, wire.CodeInvalidArgument},
		{"msgId negative", alicePhone.c, wire.Request{Type: wire.TypeRead, Conversation: direct, MsgID: -5}, wire.CodeInvalidArgument},
		{"bad conversation id", alicePhone.c, wire.Request{Type: wire.TypeRead, Conversation: "d:bob:alice", MsgID: dm[0]}, wire.CodeInvalidArgument},
		{"no conversation", alicePhone.c, wire.Request{Type: wire.TypeRead, MsgID: dm[0]}, wire.CodeInvalidArgument},
		{"readers: unknown group", alicePhone.c, wire.Request{Type: wire.TypeReaders, Conversation: "g:nosuchgroup", MsgID: 1}, wire.CodeNotFound},
		{"readers: another's direct conversation", carol.c, wire.Request{Type: wire.TypeReaders, Conversation: direct, MsgID: dm[0]}, wire.CodeForbidden},
		{"readers: msgId past the newest", alicePhone.c, wire.Request{Type: wire.TypeReaders, Conversation: conv, MsgID: tooFar}, wire.CodeInvalidArgument},
		{"readers: msgId zero", alicePhone.c, wire.Request{Type: wire.TypeReaders, Conversation: conv}, wire.CodeInvalidArgument},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Do(ctxT(t), tt.req)
			if got := client.CodeOf(err); got != tt.want {
				t.Errorf("%s: code %q (%v), want %q", tt.name, got, err, tt.want)
			}
		})
	}
	// Nothing of the refused reads moved a cursor.
	wantUnread(t, "alice", alicePhone.c, direct, 2, 0)
	wantUnread(t, "alice", alicePhone.c, conv, 1, gm[5])
}

// A node whose store holds the conversation index of an earlier layout
// moves it at start: cursors and unread counts read as before.
func TestReadStateSurvivesTheIndexLayoutMove(t *testing.T) {
	srv := startServer(t, nil)
	ctx := ctxT(t)
	alice, bob := srv.dial("alice", "phone"), srv.dial("bob", "phone")
	var acks []int64
	for i := range 4 {
		ack, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("a", i), "", fmt.Sprint("hi ", i))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack.MsgID)
	}
	if _, err := bob.Send(ctx, client.Target{Account: "alice"}, "b0", "", "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Read(ctx, "d:alice:bob", acks[1]); err != nil {
		t.Fatal(err)
	}
	wantUnread(t, "bob before", bob, "d:alice:bob", 2, acks[1])
	before := map[string]map[string]wire.ConversationInfo{"alice": unreadOf(t, alice), "bob": unreadOf(t, bob)}
	srv.stop()

	db, err := parleypebble.Open(parleypebble.Config{Dir: filepath.Join(srv.dir, "store"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if n := conversationstest.ToLayout1(t, db); n == 0 {
		t.Fatal("the store holds no index keys to move back")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	srv.start()
	for who, want := range before {
		got := unreadOf(t, srv.dial(who, "laptop"))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s's conversations after the move: %+v, want %+v", who, got, want)
		}
	}
}
