package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

var notifySecret = []byte("notify-secret-for-tests-0123456789")

// webhook is a notification receiver as an application runs it: it
// verifies every request's signature and timestamp, answers from a
// script, and keeps what it accepted.
type webhook struct {
	t   testing.TB
	srv *httptest.Server

	mu sync.Mutex
	// script is the statuses to answer, in turn; then 200.
	script []int
	// hang, while open, holds every request until it closes.
	hang chan struct{}
	// hanging counts requests being held.
	hanging int
	// requests are the ids of every request's notifications, accepted or not.
	requests [][]string
	// accepted counts each notification id answered 200; got keeps the
	// first one accepted.
	accepted map[string]int
	got      map[string]notify.Notification
	order    []string
}

func startWebhook(t testing.TB, script ...int) *webhook {
	w := &webhook{t: t, script: script, accepted: map[string]int{}, got: map[string]notify.Notification{}}
	w.srv = httptest.NewServer(w)
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := notify.Verify(notifySecret, r.Header.Get(notify.HeaderTimestamp), r.Header.Get(notify.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		w.t.Errorf("a webhook request does not verify: %v", err)
		rw.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b struct {
		Notifications []notify.Notification `json:"notifications"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		w.t.Errorf("webhook body %s: %v", body, err)
	}
	w.mu.Lock()
	hang := w.hang
	if hang != nil {
		w.hanging++
	}
	w.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		w.mu.Lock()
		w.hanging--
		w.mu.Unlock()
		if r.Context().Err() != nil {
			return
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, len(b.Notifications))
	for i, n := range b.Notifications {
		ids[i] = n.ID
	}
	w.requests = append(w.requests, ids)
	status := http.StatusOK
	if len(w.script) > 0 {
		status, w.script = w.script[0], w.script[1:]
	}
	if status == http.StatusOK {
		for _, n := range b.Notifications {
			if w.accepted[n.ID] == 0 {
				w.got[n.ID] = n
				w.order = append(w.order, n.ID)
			}
			w.accepted[n.ID]++
		}
	}
	rw.WriteHeader(status)
}

// waitFor waits until the notification id is accepted and returns it.
func (w *webhook) waitFor(t *testing.T, id string) notify.Notification {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		n, ok := w.got[id]
		w.mu.Unlock()
		if ok {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("notification %s never accepted; accepted: %v", id, w.order)
	return notify.Notification{}
}

// accounts are the recipients of the notifications accepted so far.
func (w *webhook) accounts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, id := range w.order {
		out = append(out, w.got[id].Account)
	}
	return out
}

// withNotify points a node at the webhook, with short retries.
func withNotify(w *webhook) func(*node.Config) {
	return func(c *node.Config) {
		c.Notify = notify.WebhookConfig{URL: w.srv.URL, Secret: notifySecret,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Linger: 5 * time.Millisecond}
	}
}

func sendTo(t *testing.T, c *client.Client, to client.Target, cid, body string) wire.ServerFrame {
	t.Helper()
	ack, err := c.Send(ctxT(t), to, cid, "text", body)
	if err != nil {
		t.Fatalf("send %s: %v", cid, err)
	}
	return ack
}

// An offline recipient gets exactly the documented payload, with the
// unread count for its badge; an online one gets nothing.
func TestNotifyOfflineRecipient(t *testing.T) {
	hook := startWebhook(t)
	s := startServer(t, withNotify(hook))
	alice := s.dial("alice", "phone")
	carol := s.device("carol", "phone") // online: never notified
	conv := domain.DirectConversation("alice", "bob")

	first := sendTo(t, alice, client.Target{Account: "bob"}, "n1", "hi bob")
	got := hook.waitFor(t, notify.NotificationID(conv, domain.MsgID(first.MsgID), "bob"))
	want := notify.Notification{ID: notify.NotificationID(conv, domain.MsgID(first.MsgID), "bob"), Account: "bob",
		Conversation: "d:alice:bob", MsgID: first.MsgID, Sender: "alice", Time: first.ServerTime, Kind: "text",
		Preview: "hi bob", Unread: 1}
	if got != want {
		t.Errorf("notification\n got %+v\nwant %+v", got, want)
	}
	long := strings.Repeat("é", notify.PreviewRunes+20)
	second := sendTo(t, alice, client.Target{Account: "bob"}, "n2", long)
	got = hook.waitFor(t, notify.NotificationID(conv, domain.MsgID(second.MsgID), "bob"))
	if got.Preview != strings.Repeat("é", notify.PreviewRunes) || !got.Truncated || got.Unread != 2 {
		t.Errorf("second notification: preview of %d characters, truncated %v, unread %d; want %d, true, 2",
			len([]rune(got.Preview)), got.Truncated, got.Unread, notify.PreviewRunes)
	}

	// A group of an offline and an online member: one message, decided for
	// both at once, notifies only the offline one.
	g, err := alice.CreateGroup(ctxT(t), "trio", "bob", "carol")
	if err != nil {
		t.Fatal(err)
	}
	inGroup := sendTo(t, alice, client.Target{Group: g.Group}, "n3", "to the group")
	gconv := domain.GroupConversation(domain.GroupID(g.Group))
	hook.waitFor(t, notify.NotificationID(gconv, domain.MsgID(inGroup.MsgID), "bob"))
	carol.waitInbox(t, gconv.String(), 1)
	for _, a := range hook.accounts() {
		if a != "bob" {
			t.Errorf("%s was notified; only the offline bob should be (carol is online, alice sent)", a)
		}
	}
	if _, m := httpGet(t, "http://"+s.n.Addr()+"/metrics"); metric(t, m, `parley_notifications_total{outcome="online"}`) < 1 {
		t.Error("the online recipient is not counted in /metrics")
	}
}

// A webhook answering 500 is retried with the same notification, which is
// accepted once.
func TestNotifyRetriesAFailingWebhook(t *testing.T) {
	hook := startWebhook(t, 500, 503, 429)
	s := startServer(t, withNotify(hook))
	alice := s.dial("alice", "phone")
	ack := sendTo(t, alice, client.Target{Account: "bob"}, "r1", "are you there")
	id := notify.NotificationID(domain.DirectConversation("alice", "bob"), domain.MsgID(ack.MsgID), "bob")
	hook.waitFor(t, id)
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.requests) != 4 {
		t.Errorf("%d requests, want 4 (three refused, one accepted)", len(hook.requests))
	}
	for i, ids := range hook.requests {
		if len(ids) != 1 || ids[0] != id {
			t.Errorf("request %d carried %v, want the same notification %s", i, ids, id)
		}
	}
	if hook.accepted[id] != 1 {
		t.Errorf("accepted %d times, want once", hook.accepted[id])
	}
	if _, m := httpGet(t, "http://"+s.n.Addr()+"/metrics"); metric(t, m, `parley_notify_webhook_retries_total{reason="500"}`) != 1 {
		t.Error("the retry after 500 is not counted in /metrics")
	}
}

// A muted conversation notifies nobody; unmuted, it notifies again. The
// mute shows in the conversation list.
func TestNotifyHonoursMute(t *testing.T) {
	hook := startWebhook(t)
	s := startServer(t, withNotify(hook))
	conv := domain.DirectConversation("alice", "bob")
	base := "http://" + s.n.Addr() + "/api/v1/conversations/" + conv.String() + "/mute"
	bobToken := s.token("bob", "phone", time.Hour)
	call := func(method, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, base, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bobToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := call(http.MethodPut, `{}`); code != 200 || out["muted"] != true || out["mutedUntil"] != float64(0) {
		t.Fatalf("mute over HTTP: %d %v", code, out)
	}
	alice := s.dial("alice", "phone")
	muted := sendTo(t, alice, client.Target{Account: "bob"}, "m1", "you muted me")
	// The mute in force when the projection takes the message decides.
	waitMetric(t, s, `parley_notifications_total{outcome="muted"}`, 1)
	if code, out := call(http.MethodDelete, ``); code != 200 || out["muted"] != false {
		t.Fatalf("unmute over HTTP: %d %v", code, out)
	}
	after := sendTo(t, alice, client.Target{Account: "bob"}, "m2", "now you hear me")
	// One partition, in order: once the second is notified, the first was
	// decided.
	hook.waitFor(t, notify.NotificationID(conv, domain.MsgID(after.MsgID), "bob"))
	hook.mu.Lock()
	if n := hook.accepted[notify.NotificationID(conv, domain.MsgID(muted.MsgID), "bob")]; n != 0 {
		t.Errorf("the message sent while muted was notified %d times", n)
	}
	hook.mu.Unlock()

	// Over the socket: a mute until a future time, shown in the list; a
	// time passed unmutes.
	carol := s.dial("carol", "phone")
	cc := domain.DirectConversation("alice", "carol").String()
	sendTo(t, alice, client.Target{Account: "carol"}, "m3", "hello carol")
	until := time.Now().Add(time.Hour).UnixMilli()
	f, err := carol.Mute(ctxT(t), cc, until)
	if err != nil || f.Type != wire.TypeMuteState || f.Mute == nil || !f.Muted || f.MutedUntil != until {
		t.Fatalf("mute: %+v %v", f, err)
	}
	list, err := carol.Conversations(ctxT(t), 0)
	if err != nil || len(list) != 1 || !list[0].Muted || list[0].MutedUntil != until {
		t.Fatalf("conversation list: %+v %v", list, err)
	}
	if f, err := carol.Mute(ctxT(t), cc, time.Now().Add(-time.Minute).UnixMilli()); err != nil || f.Muted {
		t.Fatalf("mute until a time passed: %+v %v, want unmuted", f, err)
	}
	for _, tc := range []struct {
		name string
		req  wire.Request
		code wire.Code
	}{
		{"not a participant", wire.Request{Type: wire.TypeMute, Conversation: conv.String()}, wire.CodeForbidden},
		{"bad conversation", wire.Request{Type: wire.TypeMute, Conversation: "x:y"}, wire.CodeInvalidArgument},
		{"negative until", wire.Request{Type: wire.TypeMute, Conversation: cc, Until: -1}, wire.CodeInvalidArgument},
		{"unmute not a participant", wire.Request{Type: wire.TypeUnmute, Conversation: conv.String()}, wire.CodeForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := carol.Do(ctxT(t), tc.req)
			var pe *client.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("%+v: %v, want %s", tc.req, err, tc.code)
			}
		})
	}
}

// A webhook that hangs delays neither acks nor pushes: every message is
// acknowledged and pushed to the online member while the webhook holds
// its first request; the notify projection's lag shows in /metrics, and
// once the webhook answers, the notifications go out.
func TestNotifyHangingWebhookDelaysNothing(t *testing.T) {
	hook := startWebhook(t)
	hook.hang = make(chan struct{})
	s := startServer(t, withNotify(hook))
	alice := s.dial("alice", "phone")
	carol := s.device("carol", "phone")
	g, err := alice.CreateGroup(ctxT(t), "busy", "bob", "carol")
	if err != nil {
		t.Fatal(err)
	}
	gconv := domain.GroupConversation(domain.GroupID(g.Group))
	const n = 30
	var ids []string
	for i := range n {
		ack := sendTo(t, alice, client.Target{Group: g.Group}, fmt.Sprintf("h%d", i), fmt.Sprintf("busy %d", i))
		ids = append(ids, notify.NotificationID(gconv, domain.MsgID(ack.MsgID), "bob"))
	}
	carol.waitInbox(t, gconv.String(), n)
	// The pushes went on; the notifications reach the webhook on their own
	// time (under load, after the last push), and hang there.
	waitFor(t, func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		return hook.hanging > 0
	})
	hook.mu.Lock()
	accepted := len(hook.accepted)
	hook.mu.Unlock()
	if accepted != 0 {
		t.Fatalf("the webhook accepted %d notifications while it hangs: the test did not hang it", accepted)
	}
	_, m := httpGet(t, "http://"+s.n.Addr()+"/metrics")
	lag := 0.0
	for p := range 4 {
		lag += metric(t, m, fmt.Sprintf(`parley_projection_lag_records{partition="%d",projection="%s"}`, p, notify.Name))
	}
	if lag < 1 {
		t.Errorf("the notify projection's lag is %v while its webhook hangs", lag)
	}
	hook.mu.Lock()
	close(hook.hang)
	hook.hang = nil
	hook.mu.Unlock()
	for _, id := range ids {
		hook.waitFor(t, id)
	}
}

// waitMetric waits until series in /metrics reaches at least min.
func waitMetric(t *testing.T, s *server, series string, min float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, m := httpGet(t, "http://"+s.n.Addr()+"/metrics"); metric(t, m, series) >= min {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never reached %v", series, min)
}

// In scale-out the projectors notify, reading presence from Redis and
// mutes from PostgreSQL, and a projector that restarts resumes where it
// stopped.
func TestClusterNotify(t *testing.T) {
	c := startCluster(t)
	hook := startWebhook(t)
	gw := c.instance(gatewayOnly)
	proj := c.instance(projectorOnly, withNotify(hook))
	alice := gw.dial("alice", "phone")
	carol := gw.device("carol", "phone")
	g, err := alice.CreateGroup(ctxT(t), "scaled", "bob", "carol")
	if err != nil {
		t.Fatal(err)
	}
	gconv := domain.GroupConversation(domain.GroupID(g.Group))
	first := sendTo(t, alice, client.Target{Group: g.Group}, "c1", "to everyone")
	hook.waitFor(t, notify.NotificationID(gconv, domain.MsgID(first.MsgID), "bob"))
	carol.waitInbox(t, gconv.String(), 1)
	if got := hook.accounts(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("notified %v, want only the offline bob", got)
	}

	// Muted through a gateway, honoured by the projector.
	req, _ := http.NewRequest(http.MethodPut, "http://"+gw.n.Addr()+"/api/v1/conversations/"+gconv.String()+"/mute", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+gw.token("bob", "phone", time.Hour))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("mute: %d", resp.StatusCode)
	}
	muted := sendTo(t, alice, client.Target{Group: g.Group}, "c2", "bob muted this")
	waitMetric(t, proj, `parley_notifications_total{outcome="muted"}`, 1)

	// Sent while the only projector is down: notified once it is back.
	proj.stop()
	conv := domain.DirectConversation("alice", "bob")
	down := sendTo(t, alice, client.Target{Account: "bob"}, "c3", "while the projector is down")
	proj.start()
	hook.waitFor(t, notify.NotificationID(conv, domain.MsgID(down.MsgID), "bob"))
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if n := hook.accepted[notify.NotificationID(gconv, domain.MsgID(muted.MsgID), "bob")]; n != 0 {
		t.Errorf("the muted group's message was notified %d times", n)
	}
	for id, n := range hook.accepted {
		if n != 1 {
			t.Errorf("notification %s accepted %d times, want once", id, n)
		}
	}
}

// A single node whose webhook fails keeps what it has not notified across
// a restart, and notifies it then.
func TestNotifyResumesAfterRestart(t *testing.T) {
	hook := startWebhook(t)
	for range 10_000 {
		hook.script = append(hook.script, http.StatusServiceUnavailable)
	}
	s := startServer(t, withNotify(hook))
	alice := s.dial("alice", "phone")
	ack := sendTo(t, alice, client.Target{Account: "bob"}, "r1", "before the restart")
	waitMetric(t, s, `parley_notify_webhook_retries_total{reason="503"}`, 1)
	alice.Close()
	s.stop()
	hook.mu.Lock()
	hook.script = nil
	hook.mu.Unlock()
	s.start()
	id := notify.NotificationID(domain.DirectConversation("alice", "bob"), domain.MsgID(ack.MsgID), "bob")
	hook.waitFor(t, id)
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if hook.accepted[id] != 1 {
		t.Errorf("accepted %d times, want once", hook.accepted[id])
	}
}
