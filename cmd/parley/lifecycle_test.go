package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// changes are the edited and deleted pushes a device got, in order.
func (d *device) changes() []wire.ServerFrame {
	var out []wire.ServerFrame
	for _, f := range d.received() {
		if f.Type == wire.TypeEdited || f.Type == wire.TypeDeleted {
			out = append(out, f)
		}
	}
	return out
}

func (d *device) waitChanges(t *testing.T, n int) []wire.ServerFrame {
	t.Helper()
	waitFor(t, func() bool { return len(d.changes()) >= n })
	return d.changes()
}

// checkLifecycle checks a conversation's messages after the edit of the
// first and the deletion of the second: the latest body with editedAt,
// a tombstone with its ids and no body, the third as sent.
func checkLifecycle(t *testing.T, who string, got []wire.Message, edited, deleted int64) {
	t.Helper()
	if len(got) != 3 {
		t.Fatalf("%s: %d messages, want 3: %+v", who, len(got), got)
	}
	if m := got[0]; m.MsgID != edited || m.Body != "one, edited" || m.EditedAt == 0 || m.Deleted {
		t.Errorf("%s: edited message = %+v", who, m)
	}
	if m := got[1]; m.MsgID != deleted || m.Body != "" || !m.Deleted || m.EditedAt != 0 || m.MessageID == "" || m.From != "alice" || m.ServerTime == 0 {
		t.Errorf("%s: tombstone = %+v", who, m)
	}
	if m := got[2]; m.Body != "three" || m.EditedAt != 0 || m.Deleted {
		t.Errorf("%s: untouched message = %+v", who, m)
	}
}

// editAndDelete has alice send three messages to bob, edit the first and
// delete the second, each from the phone, and returns the first two acks.
func editAndDelete(t *testing.T, alice *client.Client) (wire.ServerFrame, wire.ServerFrame) {
	t.Helper()
	ctx := ctxT(t)
	var acks []wire.ServerFrame
	for i, body := range []string{"one", "two", "three"} {
		ack, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("c", i), "", body)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	conv := acks[0].Conversation
	ack, err := alice.Edit(ctx, conv, acks[0].MsgID, "e1", "one, edited")
	if err != nil {
		t.Fatal(err)
	}
	if ack.Type != wire.TypeAck || ack.MsgID != acks[0].MsgID || ack.MessageID != acks[0].MessageID || ack.Duplicate || ack.ServerTime < acks[0].ServerTime {
		t.Errorf("edit ack = %+v", ack)
	}
	retry, err := alice.Edit(ctx, conv, acks[0].MsgID, "e1", "one, edited")
	if err != nil || !retry.Duplicate || retry.MsgID != acks[0].MsgID {
		t.Errorf("edit retry = %+v, %v; want a duplicate ack", retry, err)
	}
	del, err := alice.Delete(ctx, conv, acks[1].MsgID)
	if err != nil || del.MsgID != acks[1].MsgID || del.Duplicate {
		t.Errorf("delete ack = %+v, %v", del, err)
	}
	again, err := alice.Delete(ctx, conv, acks[1].MsgID)
	if err != nil || !again.Duplicate || again.ServerTime != 0 || again.MsgID != acks[1].MsgID {
		t.Errorf("second delete = %+v, %v; want a duplicate ack", again, err)
	}
	return acks[0], acks[1]
}

// Edit and delete reach online devices as pushes — not the device that
// made them — and offline devices by sync, from the store and the cache
// alike: the latest body with editedAt, and a tombstone in place of the
// deleted message.
func TestEditAndDeleteReachEveryDevice(t *testing.T) {
	s := startServer(t, nil)
	alice := s.device("alice", "phone")
	laptop := s.device("alice", "laptop")
	bob := s.device("bob", "phone")
	first, second := editAndDelete(t, alice.c)
	conv := first.Conversation

	for name, d := range map[string]*device{"bob": bob, "alice's laptop": laptop} {
		ch := d.waitChanges(t, 2)
		if len(ch) != 2 || ch[0].Type != wire.TypeEdited || ch[0].MsgID != first.MsgID || ch[0].Body != "one, edited" ||
			ch[0].EditedAt == 0 || ch[0].Conversation != conv || ch[1].Type != wire.TypeDeleted || ch[1].MsgID != second.MsgID ||
			ch[1].DeletedAt == 0 || ch[1].Body != "" {
			t.Errorf("%s: changes pushed = %+v", name, ch)
		}
		checkLifecycle(t, name+" inbox", d.waitInbox(t, conv, 3), first.MsgID, second.MsgID)
	}
	time.Sleep(100 * time.Millisecond) // a push to the phone would have come by now
	if ch := alice.changes(); len(ch) != 0 {
		t.Errorf("the device that made the changes got %d pushes of them", len(ch))
	}

	tablet := s.device("bob", "tablet")
	ctx := ctxT(t)
	for _, tc := range []struct {
		lastTime int64
		source   string
	}{{0, "store"}, {time.Now().UnixMilli(), "cache"}} {
		f, err := tablet.c.Sync(ctx, conv, wire.Cursor{LastTime: tc.lastTime}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if f.Source != tc.source {
			t.Errorf("sync answered from %s, want %s", f.Source, tc.source)
		}
		checkLifecycle(t, "sync from "+tc.source, f.Messages, first.MsgID, second.MsgID)
	}
	// The history survives a restart as it was left.
	s.restart()
	checkLifecycle(t, "after a restart", history(t, s.dial("bob", "tablet2"), conv), first.MsgID, second.MsgID)
}

// Requests to edit or delete that break a rule are answered with a code
// and change nothing.
func TestEditAndDeleteBadInput(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.API.EditWindow = 2 * time.Second })
	ctx := ctxT(t)
	alice, bob, carol := s.dial("alice", "phone"), s.dial("bob", "phone"), s.dial("carol", "phone")
	old, err := alice.Send(ctx, client.Target{Account: "bob"}, "old", "", "old")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // past the edit window
	mine, err := alice.Send(ctx, client.Target{Account: "bob"}, "mine", "", "mine")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := alice.Send(ctx, client.Target{Account: "bob"}, "gone", "", "gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Delete(ctx, gone.Conversation, gone.MsgID); err != nil {
		t.Fatal(err)
	}
	g, err := alice.CreateGroup(ctx, "g", "bob")
	if err != nil {
		t.Fatal(err)
	}
	inGroup, err := bob.Send(ctx, client.Target{Group: g.Group}, "bg", "", "bob's")
	if err != nil {
		t.Fatal(err)
	}
	conv, gconv := mine.Conversation, "g:"+g.Group
	edit := func(c *client.Client, conv string, id int64, cid, body string) func() error {
		return func() error {
			_, err := c.Do(ctx, wire.Request{Type: wire.TypeEdit, Conversation: conv, MsgID: id, ClientMsgID: cid, Body: body})
			return err
		}
	}
	del := func(c *client.Client, conv string, id int64) func() error {
		return func() error {
			_, err := c.Do(ctx, wire.Request{Type: wire.TypeDelete, Conversation: conv, MsgID: id})
			return err
		}
	}
	tests := []struct {
		name string
		do   func() error
		want wire.Code
	}{
		{"edit someone else's message", edit(bob, conv, mine.MsgID, "b1", "x"), wire.CodeForbidden},
		{"delete someone else's message", del(bob, conv, mine.MsgID), wire.CodeForbidden},
		{"the group's owner deletes a member's message", del(alice, gconv, inGroup.MsgID), wire.CodeForbidden},
		{"edit a message that does not exist", edit(alice, conv, mine.MsgID+1000, "a1", "x"), wire.CodeNotFound},
		{"delete a message that does not exist", del(alice, conv, mine.MsgID+1000), wire.CodeNotFound},
		{"edit a deleted message", edit(alice, conv, gone.MsgID, "a2", "back"), wire.CodeNotFound},
		{"edit outside the window", edit(alice, conv, old.MsgID, "a3", "late"), wire.CodeTooLate},
		{"body too large", edit(alice, conv, mine.MsgID, "a4", strings.Repeat("x", 16<<10+1)), wire.CodeTooLarge},
		{"no client message id", edit(alice, conv, mine.MsgID, "", "x"), wire.CodeInvalidArgument},
		{"client message id of another request", edit(alice, conv, mine.MsgID, "old", "x"), wire.CodeInvalidArgument},
		{"no msgId", edit(alice, conv, 0, "a5", "x"), wire.CodeInvalidArgument},
		{"negative msgId", del(alice, conv, -1), wire.CodeInvalidArgument},
		{"no conversation", del(alice, "", mine.MsgID), wire.CodeInvalidArgument},
		{"malformed conversation", edit(alice, "d:bob:alice", mine.MsgID, "a6", "x"), wire.CodeInvalidArgument},
		{"a conversation of others", del(carol, conv, mine.MsgID), wire.CodeForbidden},
		{"a group one is not in", edit(carol, gconv, inGroup.MsgID, "c1", "x"), wire.CodeNotMember},
		{"a group that does not exist", del(carol, "g:nosuchgroup", 1), wire.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := client.CodeOf(tt.do()); got != tt.want {
				t.Errorf("code %q, want %q", got, tt.want)
			}
		})
	}
	// Deleting has no window; nothing refused above changed a message.
	if _, err := alice.Delete(ctx, conv, old.MsgID); err != nil {
		t.Errorf("delete outside the edit window: %v", err)
	}
	got := history(t, bob, conv)
	want := []string{"", "mine", ""}
	if len(got) != 3 || fmt.Sprint(bodies(got)) != fmt.Sprint(want) || got[1].EditedAt != 0 || !got[0].Deleted || !got[2].Deleted {
		t.Errorf("history after the refusals = %+v", got)
	}
	if gh := history(t, bob, gconv); len(gh) != 1 || gh[0].Body != "bob's" || gh[0].Deleted {
		t.Errorf("group history = %+v", gh)
	}
}

// A client message id names one request (protocol.md, edit): an edit's key
// reused to edit another message, or a message's own send key used for
// its edit, is refused, and neither message changes; the edit's own retry
// still gets its ack.
func TestEditKeysNameOneRequest(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice, bob := s.dial("alice", "phone"), s.dial("bob", "phone")
	m1, err := alice.Send(ctx, client.Target{Account: "bob"}, "m1", "", "one")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := alice.Send(ctx, client.Target{Account: "bob"}, "m2", "", "two")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(id int64, cid, body string) (wire.ServerFrame, error) {
		return alice.Do(ctx, wire.Request{Type: wire.TypeEdit, Conversation: m1.Conversation, MsgID: id, ClientMsgID: cid, Body: body})
	}
	first, err := edit(m1.MsgID, "e1", "one, edited")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := edit(m1.MsgID, "e1", "one, edited"); err != nil || !again.Duplicate || again.MsgID != m1.MsgID || again.ServerTime != first.ServerTime {
		t.Fatalf("the edit's retry: %+v, %v; want the first ack %+v, duplicate", again, err, first)
	}
	// A send with the edit's key is that edit's retry too: its ack, and
	// nothing sent.
	if again, err := alice.Send(ctx, client.Target{Account: "carol"}, "e1", "", "to carol"); err != nil || !again.Duplicate || again.MsgID != m1.MsgID || again.ServerTime != first.ServerTime {
		t.Fatalf("a send with the edit's key: %+v, %v; want the edit's ack %+v, duplicate", again, err, first)
	}
	for name, do := range map[string]func() (wire.ServerFrame, error){
		"an edit's key for another message": func() (wire.ServerFrame, error) { return edit(m2.MsgID, "e1", "two, edited") },
		"the message's own send key":        func() (wire.ServerFrame, error) { return edit(m1.MsgID, "m1", "one, again") },
		"another message's send key":        func() (wire.ServerFrame, error) { return edit(m1.MsgID, "m2", "one, again") },
	} {
		if f, err := do(); client.CodeOf(err) != wire.CodeInvalidArgument {
			t.Errorf("%s: %+v, %v; want invalid_argument", name, f, err)
		}
	}
	if got := bodies(history(t, bob, m1.Conversation)); fmt.Sprint(got) != "[one, edited two]" {
		t.Errorf("history %q", got)
	}
}

// In a cluster, changes made on one gateway reach devices on another as
// pushes and by sync; `parley replay` into an empty schema and prefix
// rebuilds the latest bodies and the tombstones — the deleted body is in
// no table and no cache key — and replaying again changes nothing.
func TestClusterEditDeleteAndReplay(t *testing.T) {
	c := startCluster(t)
	gw1, gw2 := c.instance(gatewayOnly), c.instance(gatewayOnly)
	c.instance(projectorOnly)
	alice := gw1.device("alice", "phone")
	bob := gw2.device("bob", "phone")
	first, second := editAndDelete(t, alice.c)
	conv := first.Conversation
	if ch := bob.waitChanges(t, 2); ch[0].Type != wire.TypeEdited || ch[1].Type != wire.TypeDeleted {
		t.Errorf("bob's changes = %+v", ch)
	}
	checkLifecycle(t, "bob's inbox", bob.waitInbox(t, conv, 3), first.MsgID, second.MsgID)
	// In a group, every member's device on the other gateway gets the change.
	ctx := ctxT(t)
	g, err := alice.c.CreateGroup(ctx, "lifecycle", "bob")
	if err != nil {
		t.Fatal(err)
	}
	gm, err := alice.c.Send(ctx, client.Target{Group: g.Group}, "g1", "", "to the group")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Edit(ctx, gm.Conversation, gm.MsgID, "ge1", "to the group, edited"); err != nil {
		t.Fatal(err)
	}
	if ch := bob.waitChanges(t, 3); ch[2].Type != wire.TypeEdited || ch[2].Conversation != gm.Conversation || ch[2].Body != "to the group, edited" {
		t.Errorf("bob's group change = %+v", ch[2])
	}
	tablet := gw2.dial("bob", "tablet")
	checkLifecycle(t, "sync on the other gateway", history(t, tablet, conv), first.MsgID, second.MsgID)
	waitFor(t, func() bool { h := c.pgHistory(conv); return len(h) == 3 && h[1].Deleted })
	checkLifecycle(t, "PostgreSQL", c.pgHistory(conv), first.MsgID, second.MsgID)
	waitFor(t, func() bool {
		return strings.Contains(strings.Join(cacheMembers(t, c.rdb, c.prefix, conv), "\n"), `"x":true`)
	})

	emptyPG := postgrestest.Config(t)
	_, emptyPrefix := redistest.Client(t)
	pool, err := postgres.Open(ctx, emptyPG)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rebuilt := &testCluster{t: t, pool: pool}
	for round := range 2 {
		var out, errOut bytes.Buffer
		err := run([]string{"replay", "--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4",
			"--projection", "all", "--postgres-dsn", emptyPG.DSN, "--postgres-schema", emptyPG.Schema, "--key-schema", c.pg.Schema,
			"--redis-addr", redistest.Addr(), "--redis-prefix", emptyPrefix}, &out, &errOut)
		if err != nil {
			t.Fatalf("replay %d: %v\n%s", round, err, errOut.String())
		}
		checkLifecycle(t, fmt.Sprint("rebuilt history, round ", round), rebuilt.pgHistory(conv), first.MsgID, second.MsgID)
		if got, want := cacheMembers(t, c.rdb, emptyPrefix, conv), cacheMembers(t, c.rdb, c.prefix, conv); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rebuilt cache differs:\n got %v\nwant %v", got, want)
		}
		if members := strings.Join(cacheMembers(t, c.rdb, emptyPrefix, conv), "\n"); strings.Contains(members, `"b":"two"`) {
			t.Errorf("the rebuilt cache holds the deleted body: %s", members)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM direct_messages WHERE position('two' in convert_from(body, 'UTF8')) > 0`).Scan(&n); err != nil || n != 0 {
			t.Errorf("rebuilt tables hold the deleted body in %d rows (%v)", n, err)
		}
	}
}

// An edit, a deletion or a read made through the HTTP API is pushed to
// every device of the account, the one the request names included: no
// connection of that device got the answer. Over the socket, the device
// that made it is skipped, as before.
func TestChangesOverHTTPReachTheirOwnDevice(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	phone, laptop := s.device("alice", "phone"), s.device("alice", "laptop")
	bobPhone := s.device("bob", "phone")
	ack, err := phone.c.Send(ctx, client.Target{Account: "bob"}, "m1", "", "hello")
	if err != nil {
		t.Fatal(err)
	}
	const conv = "d:alice:bob"
	of := func(d *device, typ string) int {
		n := 0
		for _, f := range d.received() {
			if f.Type == typ && f.Conversation == conv {
				n++
			}
		}
		return n
	}
	alice := "Bearer " + s.token("alice", "phone", time.Hour)
	path := fmt.Sprintf("/conversations/%s/messages/%d", conv, ack.MsgID)
	if status, _, _ := s.api(t, http.MethodPatch, alice, path, `{"clientMsgId":"e1","body":"edited over HTTP"}`); status != http.StatusOK {
		t.Fatalf("PATCH: %d", status)
	}
	bob := "Bearer " + s.token("bob", "phone", time.Hour)
	if status, _, _ := s.api(t, http.MethodPost, bob, "/conversations/"+conv+"/read", fmt.Sprintf(`{"msgId":%d}`, ack.MsgID)); status != http.StatusOK {
		t.Fatalf("read: %d", status)
	}
	if status, _, _ := s.api(t, http.MethodDelete, alice, path, ""); status != http.StatusOK {
		t.Fatalf("DELETE: %d", status)
	}
	waitFor(t, func() bool {
		return of(phone, wire.TypeEdited) == 1 && of(phone, wire.TypeDeleted) == 1 && of(bobPhone, wire.TypeReadPush) == 1 &&
			of(laptop, wire.TypeEdited) == 1 && of(laptop, wire.TypeDeleted) == 1
	})
	// Over the socket the device that made the change has the ack only.
	again, err := phone.c.Send(ctx, client.Target{Account: "bob"}, "m2", "", "second")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phone.c.Delete(ctx, conv, again.MsgID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return of(laptop, wire.TypeDeleted) == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := of(phone, wire.TypeDeleted); n != 1 {
		t.Errorf("the phone got %d deleted pushes, want only the one made over HTTP", n)
	}
}
