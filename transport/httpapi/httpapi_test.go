package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
)

func TestNewValidatesConfig(t *testing.T) {
	n := startNode(t)
	tests := []struct {
		name    string
		mod     func(*httpapi.Config)
		wantErr string
	}{
		{name: "complete", mod: func(*httpapi.Config) {}},
		{name: "no service credential", mod: func(c *httpapi.Config) { c.ServiceCredential = "" }},
		{name: "no online", mod: func(c *httpapi.Config) { c.Online = nil }},
		{name: "no logger", mod: func(c *httpapi.Config) { c.Logger = nil }},
		{name: "no service", mod: func(c *httpapi.Config) { c.Service = nil }, wantErr: "needs a service"},
		{name: "no tokens", mod: func(c *httpapi.Config) { c.Tokens = nil }, wantErr: "needs a token verifier"},
		{name: "short service credential", mod: func(c *httpapi.Config) { c.ServiceCredential = "short" }, wantErr: "at least 16 bytes"},
		{name: "service credential with space", mod: func(c *httpapi.Config) { c.ServiceCredential = "0123456789 abcdef" }, wantErr: "white space"},
		{name: "negative body limit", mod: func(c *httpapi.Config) { c.MaxBodyBytes = -1 }, wantErr: "cannot be negative"},
		{name: "every problem at once", mod: func(c *httpapi.Config) { c.Service, c.Tokens = nil, nil }, wantErr: "needs a token verifier"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := apiConfig(n)
			tc.mod(&cfg)
			h, err := httpapi.New(cfg)
			if tc.wantErr == "" {
				if err != nil || h == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: got %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

func TestSendAsUser(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user("alice", "phone")

	first := e.send(alice, `{"to":"bob","clientMsgId":"c-1","body":"hi bob"}`)
	if first.Conversation != "d:alice:bob" || first.MsgID <= 0 || first.MessageID == "" || first.ServerTime <= 0 || first.Duplicate {
		t.Fatalf("first ack: %+v", first)
	}

	retries := []struct {
		name string
		body string
	}{
		{name: "retry", body: `{"to":"bob","clientMsgId":"c-1","body":"hi bob","retry":true}`},
		{name: "plain resend", body: `{"to":"bob","clientMsgId":"c-1","body":"hi bob"}`},
		{name: "resend from another device", body: `{"to":"bob","clientMsgId":"c-1","body":"hi bob","retry":true}`},
		{name: "resend with another body", body: `{"to":"bob","clientMsgId":"c-1","body":"changed","retry":true}`},
	}
	for _, tc := range retries {
		t.Run(tc.name, func(t *testing.T) {
			auth := alice
			if tc.name == "resend from another device" {
				auth = e.user("alice", "laptop")
			}
			got := e.send(auth, tc.body)
			want := first
			want.Duplicate = true
			if got != want {
				t.Fatalf("got %+v, want the original ack %+v", got, want)
			}
		})
	}

	t.Run("a from equal to the token is accepted", func(t *testing.T) {
		a := e.send(alice, `{"from":{"account":"alice","device":"phone"},"to":"bob","clientMsgId":"c-2","kind":"note","body":"second"}`)
		if a.Duplicate || a.MsgID <= first.MsgID {
			t.Fatalf("ack %+v after %+v", a, first)
		}
	})

	t.Run("unknown fields are ignored", func(t *testing.T) {
		e.send(alice, `{"to":"bob","clientMsgId":"c-3","body":"third","future":{"x":[1,2]}}`)
	})

	got := e.history(e.user("bob", "phone"), "d:alice:bob", "")
	if len(got) != 3 {
		t.Fatalf("bob sees %d messages, want 3: %+v", len(got), got)
	}
	m := got[0]
	want := wire.Message{MsgID: first.MsgID, MessageID: first.MessageID, ClientMsgID: "c-1", Conversation: "d:alice:bob",
		From: "alice", Device: "phone", Kind: "text", Body: "hi bob", ServerTime: first.ServerTime}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if got[1].Kind != "note" {
		t.Errorf("kind %q, want note", got[1].Kind)
	}
}

func TestSendAsService(t *testing.T) {
	e := newEnv(t, nil)

	a := e.send(service(), `{"from":{"account":"system","device":"notices"},"to":"bob","clientMsgId":"n-1","kind":"notice","body":"welcome"}`)
	if a.Conversation != "d:bob:system" || a.Duplicate {
		t.Fatalf("ack %+v", a)
	}
	// The message is the same event as one sent on a socket: it is pushed
	// to bob's online devices.
	select {
	case p := <-e.n.api.Pushes:
		m := p.Message
		if int64(m.MsgID) != a.MsgID || m.Sender.Account != "system" || m.Sender.Device != "notices" || m.Kind != "notice" || !slices.Contains(p.Recipients, "bob") {
			t.Fatalf("push %+v", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no push")
	}
	again := e.send(service(), `{"from":{"account":"system","device":"notices"},"to":"bob","clientMsgId":"n-1","body":"welcome","retry":true}`)
	if again.MsgID != a.MsgID || !again.Duplicate {
		t.Fatalf("retry %+v, want msgid %d and duplicate", again, a.MsgID)
	}

	t.Run("into a group the sender belongs to", func(t *testing.T) {
		g := e.createGroup("alice", "bob")
		a := e.send(service(), `{"from":{"account":"alice","device":"bot"},"group":"`+g.Group+`","clientMsgId":"g-1","body":"from the bot"}`)
		if a.Conversation != "g:"+g.Group {
			t.Fatalf("ack %+v", a)
		}
		msgs := e.history(e.user("bob", "tablet"), "g:"+g.Group, "")
		if len(msgs) != 1 || msgs[0].From != "alice" || msgs[0].Device != "bot" {
			t.Fatalf("group history %+v", msgs)
		}
	})
}

func TestSync(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.user("alice", "phone"), e.user("bob", "phone")
	var acks []ack
	for i := range 5 {
		acks = append(acks, e.send(alice, fmt.Sprintf(`{"to":"bob","clientMsgId":"m-%d","body":"%d"}`, i, i)))
	}
	path := "/api/v1/conversations/d:alice:bob/messages"

	t.Run("pages from the store", func(t *testing.T) {
		var bodies []string
		var cur wire.Cursor
		var pages []bool
		for {
			var p messages
			e.ok(req{Method: http.MethodGet, Path: path + "?limit=2&lastMsgId=" + itoa(cur.LastMsgID), Auth: bob}, http.StatusOK, &p)
			if p.Source != "store" || p.Conversation != "d:alice:bob" {
				t.Fatalf("page %+v", p)
			}
			for _, m := range p.Messages {
				if m.MsgID <= cur.LastMsgID {
					t.Fatalf("msgid %d not after cursor %d", m.MsgID, cur.LastMsgID)
				}
				bodies = append(bodies, m.Body)
			}
			if p.Next.LastTime <= 0 {
				t.Fatalf("next %+v", p.Next)
			}
			cur = p.Next
			pages = append(pages, p.HasMore)
			if !p.HasMore {
				break
			}
		}
		if fmt.Sprint(bodies) != "[0 1 2 3 4]" || fmt.Sprint(pages) != "[true true false]" {
			t.Fatalf("bodies %v, hasMore per page %v", bodies, pages)
		}
		if cur.LastMsgID != acks[4].MsgID {
			t.Fatalf("cursor %d, want the last msgid %d", cur.LastMsgID, acks[4].MsgID)
		}
		// An empty page keeps the cursor and lists no messages as [].
		got := e.do(req{Method: http.MethodGet, Path: path + "?lastMsgId=" + itoa(cur.LastMsgID), Auth: bob})
		var p messages
		if err := json.Unmarshal(got.Body, &p); err != nil || got.Status != http.StatusOK || p.Next.LastMsgID != cur.LastMsgID || p.HasMore || !strings.Contains(string(got.Body), `"messages":[]`) {
			t.Fatalf("empty page: %d %s", got.Status, got.Body)
		}
	})

	t.Run("recent lastTime reads the cache", func(t *testing.T) {
		// The cache answers once it has applied the log; it may lag a moment.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var p messages
			e.ok(req{Method: http.MethodGet, Auth: bob,
				Path: fmt.Sprintf("%s?lastTime=%d&lastMsgId=%d", path, time.Now().UnixMilli(), acks[1].MsgID)}, http.StatusOK, &p)
			if p.Source == "cache" {
				if len(p.Messages) != 3 || p.Messages[0].MsgID != acks[2].MsgID {
					t.Fatalf("cache page %+v", p.Messages)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("source %q, want cache", p.Source)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("old lastTime reads the store", func(t *testing.T) {
		var p messages
		old := time.Now().Add(-8 * 24 * time.Hour).UnixMilli()
		e.ok(req{Method: http.MethodGet, Auth: bob, Path: fmt.Sprintf("%s?lastTime=%d", path, old)}, http.StatusOK, &p)
		if p.Source != "store" || len(p.Messages) != 5 {
			t.Fatalf("source %q, %d messages", p.Source, len(p.Messages))
		}
	})

	t.Run("a service reads as a participant", func(t *testing.T) {
		got := e.history(service(), "d:alice:bob", "&as=alice")
		if len(got) != 5 {
			t.Fatalf("%d messages, want 5", len(got))
		}
	})

	t.Run("a user may name itself in as", func(t *testing.T) {
		if got := e.history(bob, "d:alice:bob", "&as=bob"); len(got) != 5 {
			t.Fatalf("%d messages, want 5", len(got))
		}
	})

	t.Run("an escaped conversation id works", func(t *testing.T) {
		var p messages
		e.ok(req{Method: http.MethodGet, Auth: bob, Path: "/api/v1/conversations/d%3Aalice%3Abob/messages"}, http.StatusOK, &p)
		if len(p.Messages) != 5 {
			t.Fatalf("%d messages, want 5", len(p.Messages))
		}
	})
}

func TestConversations(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user("alice", "phone")
	d := e.send(alice, `{"to":"bob","clientMsgId":"d-1","body":"direct"}`)
	g := e.createGroup("alice", "carol")
	ga := e.send(alice, `{"group":"`+g.Group+`","clientMsgId":"g-1","body":"group"}`)

	want := []wire.ConversationInfo{
		{Conversation: "g:" + g.Group, Kind: "group", Group: g.Group, LatestMsgID: ga.MsgID, LatestTime: ga.ServerTime},
		{Conversation: "d:alice:bob", Kind: "direct", Peer: "bob", LatestMsgID: d.MsgID, LatestTime: d.ServerTime},
	}
	byConv := func(l []wire.ConversationInfo) []wire.ConversationInfo {
		l = slices.Clone(l)
		slices.SortFunc(l, func(a, b wire.ConversationInfo) int { return strings.Compare(a.Conversation, b.Conversation) })
		return l
	}
	tests := []struct {
		name  string
		auth  string
		query string
		want  []wire.ConversationInfo
	}{
		{name: "user", auth: alice, want: want},
		{name: "service as alice", auth: service(), query: "?as=alice", want: want},
		{name: "bob sees alice as peer", auth: e.user("bob", "phone"),
			want: []wire.ConversationInfo{{Conversation: "d:alice:bob", Kind: "direct", Peer: "alice", LatestMsgID: d.MsgID, LatestTime: d.ServerTime, Unread: 1}}},
		{name: "carol sees the group, unread", auth: e.user("carol", "phone"),
			want: []wire.ConversationInfo{{Conversation: "g:" + g.Group, Kind: "group", Group: g.Group, LatestMsgID: ga.MsgID, LatestTime: ga.ServerTime, Unread: 1}}},
		{name: "since the future", auth: alice, query: fmt.Sprintf("?since=%d", time.Now().Add(time.Hour).UnixMilli()), want: []wire.ConversationInfo{}},
		{name: "limit", auth: alice, query: "?limit=1", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got conversationList
			e.ok(req{Method: http.MethodGet, Path: "/api/v1/conversations" + tc.query, Auth: tc.auth}, http.StatusOK, &got)
			if got.ServerTime <= 0 || got.Conversations == nil {
				t.Fatalf("answer %+v", got)
			}
			if tc.want == nil { // limit=1: one of the two
				if len(got.Conversations) != 1 {
					t.Fatalf("%d conversations, want 1", len(got.Conversations))
				}
				return
			}
			if !slices.Equal(byConv(got.Conversations), byConv(tc.want)) {
				t.Fatalf("got %+v\nwant %+v", got.Conversations, tc.want)
			}
		})
	}
}

func TestGroups(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.user("alice", "phone"), e.user("bob", "phone")
	listOf := func(auth, query string) []wire.GroupInfo {
		t.Helper()
		var l groupList
		e.ok(req{Method: http.MethodGet, Path: "/api/v1/groups" + query, Auth: auth}, http.StatusOK, &l)
		if l.Groups == nil {
			t.Fatal("groups is not a list")
		}
		return l.Groups
	}

	g := e.createGroup("alice", "bob")
	if g.Owner != "alice" || g.Name != "test" || fmt.Sprint(g.Members) != "[alice bob]" || !strings.HasPrefix(g.Group, "g") {
		t.Fatalf("created %+v", g)
	}
	members := "/api/v1/groups/" + g.Group + "/members"

	steps := []struct {
		name        string
		method      string
		path        string
		auth        string
		body        string
		wantMembers string
	}{
		{name: "a member adds carol and dave", method: http.MethodPost, path: members, auth: bob, body: `{"accounts":["dave","carol"]}`, wantMembers: "[alice bob carol dave]"},
		{name: "adding a member again changes nothing", method: http.MethodPost, path: members, auth: alice, body: `{"accounts":["carol"]}`, wantMembers: "[alice bob carol dave]"},
		{name: "the owner removes carol with DELETE", method: http.MethodDelete, path: members, auth: alice, body: `{"accounts":["carol"]}`, wantMembers: "[alice bob dave]"},
		{name: "dave leaves with members:remove", method: http.MethodPost, path: members + ":remove", auth: e.user("dave", "phone"), body: `{"accounts":["dave"]}`, wantMembers: "[alice bob]"},
		{name: "a service adds erin as alice", method: http.MethodPost, path: members + "?as=alice", auth: service(), body: `{"accounts":["erin"]}`, wantMembers: "[alice bob erin]"},
		{name: "a service removes erin as alice", method: http.MethodDelete, path: members + "?as=alice", auth: service(), body: `{"accounts":["erin"]}`, wantMembers: "[alice bob]"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var got groupAnswer
			e.ok(req{Method: s.method, Path: s.path, Auth: s.auth, Body: s.body}, http.StatusOK, &got)
			if fmt.Sprint(got.Group.Members) != s.wantMembers || got.Group.Group != g.Group {
				t.Fatalf("group %+v, want members %s", got.Group, s.wantMembers)
			}
		})
	}

	t.Run("a service creates a group as alice", func(t *testing.T) {
		var got groupAnswer
		r := e.do(req{Method: http.MethodPost, Path: "/api/v1/groups?as=alice", Auth: service(), Body: `{"name":"ops"}`})
		if r.Status != http.StatusCreated {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Group.Owner != "alice" || fmt.Sprint(got.Group.Members) != "[alice]" || r.Header.Get("Location") != "/api/v1/groups/"+got.Group.Group {
			t.Fatalf("group %+v, location %q", got.Group, r.Header.Get("Location"))
		}
		// The Location is the group, for its members.
		var read groupAnswer
		e.ok(req{Method: http.MethodGet, Path: r.Header.Get("Location"), Auth: alice}, http.StatusOK, &read)
		if read.Group.Group != got.Group.Group || read.Group.Name != "ops" || read.Group.Owner != "alice" {
			t.Fatalf("GET %s = %+v", r.Header.Get("Location"), read.Group)
		}
		for name, tc := range map[string]struct {
			path, auth string
			status     int
			code       wire.Code
		}{
			"a non-member":        {r.Header.Get("Location"), e.user("mallory", "phone"), http.StatusForbidden, wire.CodeNotMember},
			"a group that is not": {"/api/v1/groups/gnosuchgroup", alice, http.StatusNotFound, wire.CodeNotFound},
			"a malformed id":      {"/api/v1/groups/no:colons", alice, http.StatusBadRequest, wire.CodeInvalidArgument},
		} {
			if got := e.do(req{Method: http.MethodGet, Path: tc.path, Auth: tc.auth}); got.Status != tc.status || !strings.Contains(string(got.Body), string(tc.code)) {
				t.Errorf("%s: %d %s, want %d %s", name, got.Status, got.Body, tc.status, tc.code)
			}
		}
	})

	t.Run("lists", func(t *testing.T) {
		if got := listOf(alice, ""); len(got) != 2 || !slices.IsSortedFunc(got, func(a, b wire.GroupInfo) int { return strings.Compare(a.Group, b.Group) }) {
			t.Fatalf("alice's groups %+v", got)
		}
		if got := listOf(service(), "?as=bob"); len(got) != 1 || got[0].Group != g.Group {
			t.Fatalf("bob's groups %+v", got)
		}
		if got := listOf(e.user("carol", "phone"), ""); len(got) != 0 {
			t.Fatalf("carol, removed, still lists %+v", got)
		}
	})

	t.Run("a removed member can no longer send or read", func(t *testing.T) {
		carol := e.user("carol", "phone")
		r := e.do(req{Method: http.MethodPost, Path: "/api/v1/messages", Auth: carol, Body: `{"group":"` + g.Group + `","clientMsgId":"x","body":"x"}`})
		if r.Status != http.StatusForbidden || r.errorCode(t) != "not_member" {
			t.Fatalf("send: %d %s", r.Status, r.Body)
		}
		r = e.do(req{Method: http.MethodGet, Path: "/api/v1/conversations/g:" + g.Group + "/messages", Auth: carol})
		if r.Status != http.StatusForbidden || r.errorCode(t) != "not_member" {
			t.Fatalf("sync: %d %s", r.Status, r.Body)
		}
	})
}

func TestOnline(t *testing.T) {
	e := newEnv(t, nil)
	e.n.connect("alice", "phone")
	e.n.connect("alice", "laptop")
	tests := []struct {
		name        string
		auth        string
		account     string
		wantStatus  int
		wantDevices string
		wantCode    string
	}{
		{name: "service", auth: service(), account: "alice", wantStatus: http.StatusOK, wantDevices: "[laptop phone]"},
		{name: "the account itself", auth: e.user("alice", "tablet"), account: "alice", wantStatus: http.StatusOK, wantDevices: "[laptop phone]"},
		{name: "nobody online", auth: e.user("bob", "phone"), account: "bob", wantStatus: http.StatusOK, wantDevices: "[]"},
		{name: "another account", auth: e.user("bob", "phone"), account: "alice", wantStatus: http.StatusForbidden, wantCode: "forbidden"},
		{name: "bad account id", auth: service(), account: "a:b", wantStatus: http.StatusBadRequest, wantCode: "invalid_argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{Method: http.MethodGet, Path: "/api/v1/accounts/" + tc.account + "/online", Auth: tc.auth})
			if r.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.wantStatus, r.Body)
			}
			if tc.wantCode != "" {
				if got := r.errorCode(t); got != tc.wantCode {
					t.Fatalf("code %q, want %q", got, tc.wantCode)
				}
				return
			}
			var got onlineAnswer
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Account != tc.account || fmt.Sprint(got.Devices) != tc.wantDevices || got.Devices == nil {
				t.Fatalf("got %+v, want devices %s", got, tc.wantDevices)
			}
		})
	}
}

func TestOnlineFailures(t *testing.T) {
	n := startNode(t)
	tests := []struct {
		name       string
		online     func(context.Context, domain.AccountID) ([]domain.DeviceID, error)
		wantStatus int
		wantCode   string
	}{
		{name: "not configured", online: nil, wantStatus: http.StatusNotImplemented, wantCode: "unavailable"},
		{name: "unavailable", online: func(context.Context, domain.AccountID) ([]domain.DeviceID, error) {
			return nil, fmt.Errorf("cannot read routes: %w", api.ErrUnavailable)
		}, wantStatus: http.StatusServiceUnavailable, wantCode: "unavailable"},
		{name: "other error", online: func(context.Context, domain.AccountID) ([]domain.DeviceID, error) {
			return nil, fmt.Errorf("boom")
		}, wantStatus: http.StatusInternalServerError, wantCode: "internal"},
		{name: "panic", online: func(context.Context, domain.AccountID) ([]domain.DeviceID, error) {
			panic("bug")
		}, wantStatus: http.StatusInternalServerError, wantCode: "internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := apiConfig(n)
			cfg.Online = tc.online
			h, err := httpapi.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			e := &env{t: t, n: n, srv: newServer(t, h)}
			r := e.do(req{Method: http.MethodGet, Path: "/api/v1/accounts/alice/online", Auth: service()})
			if r.Status != tc.wantStatus || r.errorCode(t) != tc.wantCode {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, tc.wantStatus, tc.wantCode)
			}
		})
	}
}
