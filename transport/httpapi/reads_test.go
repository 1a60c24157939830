package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

type readState struct {
	Conversation string `json:"conversation"`
	ReadMsgID    int64  `json:"readMsgId"`
	Unread       int64  `json:"unread"`
}

type readers struct {
	Conversation string   `json:"conversation"`
	MsgID        int64    `json:"msgId"`
	Count        int      `json:"count"`
	Of           int      `json:"of"`
	Accounts     []string `json:"accounts"`
}

// Marking read over HTTP moves the cursor the conversation list shows,
// never back; readers names who read; bad input is refused with its code.
func TestReadAndReaders(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.user("alice", "phone"), e.user("bob", "phone")
	var acks []ack
	for i := range 3 {
		acks = append(acks, e.send(alice, fmt.Sprintf(`{"to":"bob","clientMsgId":"r-%d","body":"%d"}`, i, i)))
	}
	// Nobody has read yet: the readers are named, and there are none.
	if r := e.do(req{Method: http.MethodGet, Path: "/api/v1/conversations/d:alice:bob/readers?msgId=" + itoa(acks[0].MsgID), Auth: alice}); r.Status != http.StatusOK ||
		!strings.Contains(string(r.Body), `"count":0`) || !strings.Contains(string(r.Body), `"accounts":[]`) {
		t.Fatalf("readers before any read: %d %s, want accounts []", r.Status, r.Body)
	}
	path := "/api/v1/conversations/d:alice:bob/read"
	var st readState
	e.ok(req{Method: http.MethodPost, Path: path, Auth: bob, Body: fmt.Sprintf(`{"msgId":%d}`, acks[1].MsgID)}, http.StatusOK, &st)
	if st != (readState{Conversation: "d:alice:bob", ReadMsgID: acks[1].MsgID, Unread: 1}) {
		t.Fatalf("read = %+v", st)
	}
	e.ok(req{Method: http.MethodPost, Path: path, Auth: bob, Body: fmt.Sprintf(`{"msgId":%d}`, acks[0].MsgID)}, http.StatusOK, &st)
	if st.ReadMsgID != acks[1].MsgID || st.Unread != 1 {
		t.Fatalf("an older read moved the cursor: %+v", st)
	}
	var list conversationList
	e.ok(req{Method: http.MethodGet, Path: "/api/v1/conversations", Auth: bob}, http.StatusOK, &list)
	if len(list.Conversations) != 1 || list.Conversations[0].ReadMsgID != acks[1].MsgID || list.Conversations[0].Unread != 1 {
		t.Fatalf("list = %+v", list.Conversations)
	}
	// A service marks read as a named device.
	e.ok(req{Method: http.MethodPost, Path: path, Auth: service(), Body: fmt.Sprintf(`{"from":{"account":"bob","device":"bot"},"msgId":%d}`, acks[2].MsgID)}, http.StatusOK, &st)
	if st.Unread != 0 || st.ReadMsgID != acks[2].MsgID {
		t.Fatalf("service read = %+v", st)
	}
	var rs readers
	e.ok(req{Method: http.MethodGet, Path: "/api/v1/conversations/d:alice:bob/readers?msgId=" + itoa(acks[2].MsgID), Auth: alice}, http.StatusOK, &rs)
	if rs.Count != 1 || rs.Of != 1 || fmt.Sprint(rs.Accounts) != "[bob]" || rs.MsgID != acks[2].MsgID {
		t.Fatalf("readers = %+v", rs)
	}

	rows := []struct {
		name, method, path, auth, body string
		status                         int
		code                           string
	}{
		{"msgId past the newest", http.MethodPost, path, bob, fmt.Sprintf(`{"msgId":%d}`, acks[2].MsgID+1000), http.StatusBadRequest, "invalid_argument"},
		{"msgId missing", http.MethodPost, path, bob, `{}`, http.StatusBadRequest, "invalid_argument"},
		{"msgId not a number", http.MethodPost, path, bob, `{"msgId":"x"}`, http.StatusBadRequest, "bad_frame"},
		{"another's conversation", http.MethodPost, path, e.user("carol", "phone"), `{"msgId":1}`, http.StatusForbidden, "forbidden"},
		{"unknown group", http.MethodPost, "/api/v1/conversations/g:nosuch/read", bob, `{"msgId":1}`, http.StatusNotFound, "not_found"},
		{"bad conversation", http.MethodPost, "/api/v1/conversations/d:bob:alice/read", bob, `{"msgId":1}`, http.StatusBadRequest, "invalid_argument"},
		{"another device as a user", http.MethodPost, path, bob, `{"from":{"account":"alice","device":"phone"},"msgId":1}`, http.StatusForbidden, "forbidden"},
		{"service without from", http.MethodPost, path, service(), `{"msgId":1}`, http.StatusBadRequest, "invalid_argument"},
		{"readers: msgId missing", http.MethodGet, "/api/v1/conversations/d:alice:bob/readers", alice, "", http.StatusBadRequest, "invalid_argument"},
		{"readers: another's conversation", http.MethodGet, "/api/v1/conversations/d:alice:bob/readers?msgId=1", e.user("carol", "phone"), "", http.StatusForbidden, "forbidden"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{Method: tc.method, Path: tc.path, Auth: tc.auth, Body: tc.body})
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if got := r.errorCode(t); got != tc.code {
				t.Fatalf("code %q, want %q", got, tc.code)
			}
		})
	}
}
