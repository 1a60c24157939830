package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// Edit and delete over HTTP: the sender as a user or a service named in
// from; the history then shows the latest body and a tombstone. Refusals
// carry the socket's codes with their HTTP statuses.
func TestEditAndDelete(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user("alice", "phone")
	one := e.send(alice, `{"to":"bob","clientMsgId":"c-1","body":"one"}`)
	two := e.send(alice, `{"to":"bob","clientMsgId":"c-2","body":"two"}`)
	path := func(a ack) string { return "/api/v1/conversations/" + a.Conversation + "/messages/" + itoa(a.MsgID) }

	var edited ack
	e.ok(req{Method: http.MethodPatch, Path: path(one), Auth: alice, Body: `{"clientMsgId":"e-1","body":"one, edited"}`}, http.StatusOK, &edited)
	if edited.MsgID != one.MsgID || edited.MessageID != one.MessageID || edited.Duplicate || edited.ServerTime < one.ServerTime {
		t.Errorf("edit answer %+v", edited)
	}
	var again ack
	e.ok(req{Method: http.MethodPatch, Path: path(one), Auth: alice, Body: `{"clientMsgId":"e-1","body":"one, edited"}`}, http.StatusOK, &again)
	if !again.Duplicate {
		t.Errorf("edit retry %+v, want duplicate", again)
	}
	var deleted ack
	e.ok(req{Method: http.MethodDelete, Path: path(two), Auth: service(), Body: `{"from":{"account":"alice","device":"bot"}}`}, http.StatusOK, &deleted)
	if deleted.MsgID != two.MsgID || deleted.Duplicate {
		t.Errorf("delete answer %+v", deleted)
	}
	e.ok(req{Method: http.MethodDelete, Path: path(two), Auth: alice}, http.StatusOK, &deleted)
	if !deleted.Duplicate {
		t.Errorf("second delete %+v, want duplicate", deleted)
	}

	bob := e.user("bob", "phone")
	for _, tc := range []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"someone else's message", req{Method: http.MethodPatch, Path: path(one), Auth: bob, Body: `{"clientMsgId":"b-1","body":"x"}`}, http.StatusForbidden, "forbidden"},
		{"delete someone else's", req{Method: http.MethodDelete, Path: path(one), Auth: bob}, http.StatusForbidden, "forbidden"},
		{"a message that does not exist", req{Method: http.MethodDelete, Path: "/api/v1/conversations/d:alice:bob/messages/" + itoa(two.MsgID+100), Auth: alice}, http.StatusNotFound, "not_found"},
		{"a msgId that is not a number", req{Method: http.MethodDelete, Path: "/api/v1/conversations/d:alice:bob/messages/x", Auth: alice}, http.StatusBadRequest, "invalid_argument"},
		{"edit a tombstone", req{Method: http.MethodPatch, Path: path(two), Auth: alice, Body: `{"clientMsgId":"e-2","body":"back"}`}, http.StatusNotFound, "not_found"},
		{"body too large", req{Method: http.MethodPatch, Path: path(one), Auth: alice, Body: `{"clientMsgId":"e-3","body":"` + strings.Repeat("x", 16<<10+1) + `"}`}, http.StatusRequestEntityTooLarge, "too_large"},
		{"a service without from", req{Method: http.MethodDelete, Path: path(one), Auth: service()}, http.StatusBadRequest, "invalid_argument"},
		{"a user acting as another", req{Method: http.MethodPatch, Path: path(one), Auth: bob, Body: `{"from":{"account":"alice","device":"phone"},"clientMsgId":"b-2","body":"x"}`}, http.StatusForbidden, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := e.do(tc.r)
			if got.Status != tc.status || got.errorCode(t) != tc.code {
				t.Errorf("status %d %s, want %d %s", got.Status, got.Body, tc.status, tc.code)
			}
		})
	}

	h := e.history(bob, one.Conversation, "")
	if len(h) != 2 || h[0].Body != "one, edited" || h[0].EditedAt == 0 || !h[1].Deleted || h[1].Body != "" {
		t.Errorf("history %+v", h)
	}
}
