package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// missedChanges has bob's tablet read a conversation of four messages and
// go offline; alice then edits the first, deletes the second, and sends
// and edits a fifth. It returns the conversation, the tablet's cursor and
// the four acks.
func missedChanges(t *testing.T, aliceGW, bobGW *server) (string, wire.Cursor, []wire.ServerFrame) {
	t.Helper()
	ctx := ctxT(t)
	alice := aliceGW.dial("alice", "phone")
	var acks []wire.ServerFrame
	for i := range 4 {
		ack, err := alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("m", i), "", fmt.Sprint("body ", i))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	conv := acks[0].Conversation
	tablet := bobGW.dial("bob", "tablet")
	f, err := tablet.Sync(ctx, conv, wire.Cursor{}, 200)
	if err != nil || len(f.Messages) != 4 || len(f.Changes) != 0 {
		t.Fatalf("first sync = %+v, %v", f, err)
	}
	cur := *f.Next
	tablet.Close()

	if _, err := alice.Edit(ctx, conv, acks[0].MsgID, "e0", "body 0, edited"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Delete(ctx, conv, acks[1].MsgID); err != nil {
		t.Fatal(err)
	}
	fifth, err := alice.Send(ctx, client.Target{Account: "bob"}, "m4", "", "body 4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Edit(ctx, conv, fifth.MsgID, "e4", "body 4, edited"); err != nil {
		t.Fatal(err)
	}
	return conv, cur, append(acks, fifth)
}

// checkMissed checks a sync reply from the cursor of missedChanges: the
// edit and the deletion in changes, in their order, and the fifth message,
// edited, as the page.
func checkMissed(t *testing.T, who string, changes []wire.Message, more bool, page []wire.Message, acks []wire.ServerFrame) {
	t.Helper()
	if len(changes) != 2 || more {
		t.Fatalf("%s: %d changes (more %v), want 2: %+v", who, len(changes), more, changes)
	}
	if m := changes[0]; m.MsgID != acks[0].MsgID || m.Body != "body 0, edited" || m.EditedAt == 0 || m.Deleted || m.MessageID != acks[0].MessageID {
		t.Errorf("%s: first change = %+v, want the edit", who, m)
	}
	if m := changes[1]; m.MsgID != acks[1].MsgID || m.Body != "" || !m.Deleted || m.From != "alice" || m.ServerTime == 0 {
		t.Errorf("%s: second change = %+v, want the tombstone", who, m)
	}
	if len(page) != 1 || page[0].MsgID != acks[4].MsgID || page[0].Body != "body 4, edited" {
		t.Errorf("%s: page = %+v, want the fifth message, edited", who, page)
	}
}

// A device offline while messages it held were edited and deleted learns
// of it by a sync from its cursor with changes:true, from the cache and the
// store alike, over the socket, HTTP and the client's inbox; without
// changes:true the reply is as before.
func TestSyncChangesReachAnOfflineDevice(t *testing.T) {
	s := startServer(t, nil)
	conv, cur, acks := missedChanges(t, s, s)
	ctx := ctxT(t)
	tablet := s.redial("bob", "tablet")

	f, err := tablet.Sync(ctx, conv, cur, 200)
	if err != nil || len(f.Changes) != 0 || f.ChangesMore || len(f.Messages) != 1 {
		t.Errorf("sync without changes = %+v, %v; want the fifth message only", f, err)
	}
	for _, tc := range []struct {
		lastTime int64
		source   string
	}{{0, "store"}, {cur.LastTime, "cache"}} {
		f, err := tablet.SyncChanges(ctx, conv, wire.Cursor{LastTime: tc.lastTime, LastMsgID: cur.LastMsgID}, 200)
		if err != nil {
			t.Fatal(err)
		}
		if f.Source != tc.source {
			t.Errorf("answered from %s, want %s", f.Source, tc.source)
		}
		checkMissed(t, "socket, "+tc.source, f.Changes, f.ChangesMore, f.Messages, acks)
		if f.Next == nil || f.Next.LastMsgID != acks[4].MsgID {
			t.Errorf("next = %+v, want after the fifth message", f.Next)
		}
	}
	// From the new cursor, only the fifth's edit is later than the cursor:
	// listed again, harmlessly (the page brought its latest form).
	if f, err := tablet.SyncChanges(ctx, conv, wire.Cursor{LastMsgID: acks[4].MsgID}, 200); err != nil || len(f.Messages) != 0 ||
		len(f.Changes) != 1 || f.Changes[0].MsgID != acks[4].MsgID || f.Changes[0].Body != "body 4, edited" {
		t.Errorf("sync from the end = %+v, %v; want the fifth's edit only", f, err)
	}
	// From the beginning nothing is held, so nothing was missed.
	if f, err := tablet.SyncChanges(ctx, conv, wire.Cursor{}, 200); err != nil || len(f.Changes) != 0 || len(f.Messages) != 5 {
		t.Errorf("sync from 0 = %d messages, %d changes, %v; want 5 and none", len(f.Messages), len(f.Changes), err)
	}

	// HTTP says the same.
	var page struct {
		Messages    []wire.Message `json:"messages"`
		Changes     []wire.Message `json:"changes"`
		ChangesMore bool           `json:"changesMore"`
	}
	status := httpSync(t, s, fmt.Sprintf("%s/messages?lastMsgId=%d&changes=true", conv, cur.LastMsgID), &page)
	if status != http.StatusOK {
		t.Fatalf("HTTP sync: status %d", status)
	}
	checkMissed(t, "HTTP", page.Changes, page.ChangesMore, page.Messages, acks)
	page.Changes = nil
	if httpSync(t, s, fmt.Sprintf("%s/messages?lastMsgId=%d", conv, cur.LastMsgID), &page); len(page.Changes) != 0 {
		t.Errorf("HTTP sync without changes listed %d", len(page.Changes))
	}

	// The inbox of a device that reconnects applies them.
	laptop := s.dial("bob", "laptop")
	inbox := client.NewInbox(laptop)
	if err := inbox.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	laptop.Close()
	alice := s.dial("alice", "tablet")
	if _, err := alice.Edit(ctx, conv, acks[2].MsgID, "e2", "body 2, edited"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Delete(ctx, conv, acks[3].MsgID); err != nil {
		t.Fatal(err)
	}
	inbox.Use(s.redial("bob", "laptop"))
	if err := inbox.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	got := inbox.Messages(conv)
	want := []string{"body 0, edited", "", "body 2, edited", "", "body 4, edited"}
	if len(got) != len(want) {
		t.Fatalf("inbox holds %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if m.Body != want[i] || m.Deleted != (want[i] == "") {
			t.Errorf("inbox message %d = %+v, want body %q", i, m, want[i])
		}
	}
}

// httpSync GETs a conversation's sync over HTTP as bob and decodes the
// answer into v; it returns the status.
func httpSync(t *testing.T, s *server, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.n.Addr()+"/api/v1/conversations/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token("bob", "web", time.Hour))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("HTTP sync %s: %v", path, err)
	}
	return resp.StatusCode
}

// A changes field that is not a bool is refused, on the socket and over
// HTTP, and the connection lives on.
func TestSyncChangesBadInput(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	bob := s.dial("bob", "phone")
	for i, v := range []string{`"true"`, `1`, `{}`} {
		id := fmt.Sprint("b", i)
		f, err := bob.DoRaw(ctx, id, []byte(`{"id":"`+id+`","type":"sync","conversation":"d:alice:bob","lastMsgId":1,"changes":`+v+`}`))
		if client.CodeOf(err) != wire.CodeBadFrame || f.Error == "" {
			t.Errorf("changes %s: %+v, %v; want bad_frame", v, f, err)
		}
		assertAlive(t, bob)
	}
	for _, v := range []string{"yes", "1", "TRUE"} {
		var e struct {
			Code string `json:"code"`
		}
		if status := httpSync(t, s, "d:alice:bob/messages?lastMsgId=1&changes="+v, &e); status != http.StatusBadRequest || e.Code != string(wire.CodeInvalidArgument) {
			t.Errorf("HTTP changes=%s: %d %q, want 400 invalid_argument", v, status, e.Code)
		}
	}
}

// In a cluster, the changes come from PostgreSQL through migration 0008's
// indexes, to a device on another gateway than the one that made them.
func TestClusterSyncChanges(t *testing.T) {
	c := startCluster(t)
	gw1, gw2 := c.instance(gatewayOnly), c.instance(gatewayOnly)
	c.instance(projectorOnly)
	conv, cur, acks := missedChanges(t, gw1, gw2)
	tablet := gw2.redial("bob", "tablet")
	f, err := tablet.SyncChanges(ctxT(t), conv, cur, 200)
	if err != nil {
		t.Fatal(err)
	}
	checkMissed(t, "cluster", f.Changes, f.ChangesMore, f.Messages, acks)
}
