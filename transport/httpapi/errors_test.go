package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
)

// TestBadInput checks I6 over HTTP: every refusal has the socket's code,
// a matching status and a JSON body, and changes nothing.
func TestBadInput(t *testing.T) {
	const maxBody = 20 << 10 // above a 16 KiB message, so both limits can be hit
	e := newEnv(t, func(c *httpapi.Config) { c.MaxBodyBytes = maxBody })
	alice, bob, carol := e.user("alice", "phone"), e.user("bob", "phone"), e.user("carol", "phone")
	e.send(alice, `{"to":"bob","clientMsgId":"seed","body":"hi"}`)
	g := e.createGroup("alice", "bob")
	members := "/api/v1/groups/" + g.Group + "/members"
	unknownGroup := "g0123456789abcdef0123456789abcdef"

	other, err := auth.NewTokens([]byte("another-secret-0123456789abcdef-xyz"))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Mint("alice", "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired := e.mint("alice", "phone", -time.Minute)

	const send = "/api/v1/messages"
	const post, get = http.MethodPost, http.MethodGet
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantCode   wire.Code
	}{
		// The body.
		{name: "malformed JSON", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob",`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "JSON array", req: req{Method: post, Path: send, Auth: alice, Body: `[{"to":"bob"}]`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "JSON null", req: req{Method: post, Path: send, Auth: alice, Body: `null`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "empty body", req: req{Method: post, Path: send, Auth: alice, ContentType: "application/json"}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "trailing data", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"t","body":"x"} {}`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "invalid UTF-8 in the message body", req: req{Method: post, Path: send, Auth: alice, Body: "{\"to\":\"bob\",\"clientMsgId\":\"t\",\"body\":\"caf\xe9\"}"}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "invalid UTF-8 in a group name", req: req{Method: post, Path: "/api/v1/groups", Auth: alice, Body: "{\"name\":\"\xff\xfe\"}"}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "an escaped lone surrogate in the message body", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"t","body":"a\ud800b"}`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "field of the wrong type", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":5,"clientMsgId":"t"}`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "wrong type in a group body", req: req{Method: post, Path: members, Auth: alice, Body: `{"accounts":"carol"}`}, wantStatus: 400, wantCode: wire.CodeBadFrame},
		{name: "text/plain", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"t"}`, ContentType: "text/plain"}, wantStatus: 415, wantCode: wire.CodeInvalidArgument},
		{name: "no content type", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"t"}`, NoContentType: true}, wantStatus: 415, wantCode: wire.CodeInvalidArgument},
		{name: "content type of a group change", req: req{Method: post, Path: "/api/v1/groups", Auth: alice, Body: `{}`, ContentType: "application/x-www-form-urlencoded"}, wantStatus: 415, wantCode: wire.CodeInvalidArgument},
		{name: "body over the limit", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"big","body":"` + strings.Repeat("x", maxBody) + `"}`}, wantStatus: 413, wantCode: wire.CodeTooLarge},
		{name: "message over 16 KiB", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"big","body":"` + strings.Repeat("x", domain.MaxBodyBytes+1) + `"}`}, wantStatus: 413, wantCode: wire.CodeTooLarge},

		// Missing and malformed fields.
		{name: "missing clientMsgId", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","body":"x"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "neither to nor group", req: req{Method: post, Path: send, Auth: alice, Body: `{"clientMsgId":"t","body":"x"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "both to and group", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","group":"` + g.Group + `","clientMsgId":"t"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "bad recipient id", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bo:b","clientMsgId":"t"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "bad kind", req: req{Method: post, Path: send, Auth: alice, Body: `{"to":"bob","clientMsgId":"t","kind":"TEXT"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "group name over 128 bytes", req: req{Method: post, Path: "/api/v1/groups", Auth: alice, Body: `{"name":"` + strings.Repeat("n", 129) + `"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "add nobody", req: req{Method: post, Path: members, Auth: alice, Body: `{"accounts":[]}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "bad conversation id", req: req{Method: get, Path: "/api/v1/conversations/x:y/messages", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "direct id out of order", req: req{Method: get, Path: "/api/v1/conversations/d:bob:alice/messages", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "lastMsgId not a number", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages?lastMsgId=abc", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "negative lastMsgId", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages?lastMsgId=-1", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "negative limit", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages?limit=-1", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "since not a number", req: req{Method: get, Path: "/api/v1/conversations?since=yesterday", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "negative since of the list", req: req{Method: get, Path: "/api/v1/conversations?since=-1", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "negative limit of the list", req: req{Method: get, Path: "/api/v1/conversations?limit=-1", Auth: alice}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},

		// Groups and conversations that are not yours or do not exist.
		{name: "send to an unknown group", req: req{Method: post, Path: send, Auth: alice, Body: `{"group":"` + unknownGroup + `","clientMsgId":"t"}`}, wantStatus: 404, wantCode: wire.CodeNotFound},
		{name: "sync an unknown group", req: req{Method: get, Path: "/api/v1/conversations/g:" + unknownGroup + "/messages", Auth: alice}, wantStatus: 404, wantCode: wire.CodeNotFound},
		{name: "add to an unknown group", req: req{Method: post, Path: "/api/v1/groups/" + unknownGroup + "/members", Auth: alice, Body: `{"accounts":["carol"]}`}, wantStatus: 404, wantCode: wire.CodeNotFound},
		{name: "send as a non-member", req: req{Method: post, Path: send, Auth: carol, Body: `{"group":"` + g.Group + `","clientMsgId":"t"}`}, wantStatus: 403, wantCode: wire.CodeNotMember},
		{name: "sync as a non-member", req: req{Method: get, Path: "/api/v1/conversations/g:" + g.Group + "/messages", Auth: carol}, wantStatus: 403, wantCode: wire.CodeNotMember},
		{name: "add as a non-member", req: req{Method: post, Path: members, Auth: carol, Body: `{"accounts":["carol"]}`}, wantStatus: 403, wantCode: wire.CodeNotMember},
		{name: "remove the owner", req: req{Method: http.MethodDelete, Path: members, Auth: alice, Body: `{"accounts":["alice"]}`}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "a member removes another", req: req{Method: post, Path: members + ":remove", Auth: bob, Body: `{"accounts":["alice"]}`}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "someone else's conversation", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages", Auth: carol}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "a service as someone outside the conversation", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages?as=carol", Auth: service()}, wantStatus: 403, wantCode: wire.CodeForbidden},

		// Credentials.
		{name: "no token", req: req{Method: post, Path: send, Body: `{"to":"bob","clientMsgId":"t"}`}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "no token on a read", req: req{Method: get, Path: "/api/v1/conversations"}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "garbage token", req: req{Method: get, Path: "/api/v1/groups", Auth: "Bearer not.a.token"}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "empty bearer", req: req{Method: get, Path: "/api/v1/groups", Auth: "Bearer "}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "token of another server", req: req{Method: get, Path: "/api/v1/groups", Auth: "Bearer " + foreign}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "expired token", req: req{Method: get, Path: "/api/v1/groups", Auth: "Bearer " + expired}, wantStatus: 401, wantCode: wire.CodeTokenExpired},
		{name: "basic auth", req: req{Method: get, Path: "/api/v1/groups", Auth: "Basic YWxpY2U6cGFzcw=="}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "wrong service credential", req: req{Method: get, Path: "/api/v1/groups?as=alice", Auth: "Bearer svc:" + serviceCredential + "x"}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "empty service credential", req: req{Method: get, Path: "/api/v1/groups?as=alice", Auth: "Bearer svc:"}, wantStatus: 401, wantCode: wire.CodeUnauthorized},
		{name: "credentials come before the body", req: req{Method: post, Path: send, Auth: "Bearer nope", Body: `garbage`}, wantStatus: 401, wantCode: wire.CodeUnauthorized},

		// Acting for whom.
		{name: "service send without from", req: req{Method: post, Path: send, Auth: service(), Body: `{"to":"bob","clientMsgId":"t"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service send without device", req: req{Method: post, Path: send, Auth: service(), Body: `{"from":{"account":"system"},"to":"bob","clientMsgId":"t"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service send with a bad account", req: req{Method: post, Path: send, Auth: service(), Body: `{"from":{"account":"sys/tem","device":"d"},"to":"bob","clientMsgId":"t"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service sync without as", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages", Auth: service()}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service list without as", req: req{Method: get, Path: "/api/v1/conversations", Auth: service()}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service groups without as", req: req{Method: get, Path: "/api/v1/groups", Auth: service()}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service group create without as", req: req{Method: post, Path: "/api/v1/groups", Auth: service(), Body: `{"name":"x"}`}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "service with a bad as", req: req{Method: get, Path: "/api/v1/groups?as=a:b", Auth: service()}, wantStatus: 400, wantCode: wire.CodeInvalidArgument},
		{name: "user acting as another", req: req{Method: get, Path: "/api/v1/conversations/d:alice:bob/messages?as=bob", Auth: alice}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user sending with as naming another", req: req{Method: post, Path: send + "?as=bob", Auth: alice, Body: `{"to":"carol","clientMsgId":"t"}`}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user editing with as naming another", req: req{Method: http.MethodPatch, Path: "/api/v1/conversations/d:alice:bob/messages/1?as=bob", Auth: alice, Body: `{"clientMsgId":"t","body":"x"}`}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user deleting with as naming another", req: req{Method: http.MethodDelete, Path: "/api/v1/conversations/d:alice:bob/messages/1?as=bob", Auth: alice}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user reading with as naming another", req: req{Method: post, Path: "/api/v1/conversations/d:alice:bob/read?as=bob", Auth: alice, Body: `{"msgId":1}`}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user asking who is online with as naming another", req: req{Method: get, Path: "/api/v1/accounts/alice/online?as=bob", Auth: alice}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user sending as another", req: req{Method: post, Path: send, Auth: carol, Body: `{"from":{"account":"alice","device":"phone"},"to":"bob","clientMsgId":"t"}`}, wantStatus: 403, wantCode: wire.CodeForbidden},
		{name: "user sending from another device", req: req{Method: post, Path: send, Auth: alice, Body: `{"from":{"account":"alice","device":"laptop"},"to":"bob","clientMsgId":"t"}`}, wantStatus: 403, wantCode: wire.CodeForbidden},

		// Routing.
		{name: "unknown path", req: req{Method: get, Path: "/api/v1/nothing", Auth: alice}, wantStatus: 404, wantCode: wire.CodeNotFound},
		{name: "outside the prefix", req: req{Method: get, Path: "/api/v2/messages", Auth: alice}, wantStatus: 404, wantCode: wire.CodeNotFound},
		{name: "wrong method", req: req{Method: http.MethodPut, Path: send, Auth: alice, Body: `{}`}, wantStatus: 405, wantCode: wire.CodeInvalidArgument},
		{name: "GET on send", req: req{Method: get, Path: send, Auth: alice}, wantStatus: 405, wantCode: wire.CodeInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.req)
			if r.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.wantStatus, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
			if got := r.errorCode(t); got != string(tc.wantCode) {
				t.Fatalf("code %q, want %q: %s", got, tc.wantCode, r.Body)
			}
			if r.Status == http.StatusUnauthorized && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if r.Status == http.StatusMethodNotAllowed && r.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q, want POST", r.Header.Get("Allow"))
			}
		})
	}

	// Nothing refused was accepted: the conversation holds only the seed,
	// and the group is as created.
	if got := e.history(alice, "d:alice:bob", ""); len(got) != 1 {
		t.Errorf("d:alice:bob holds %d messages after the refusals, want 1: %+v", len(got), got)
	}
	if got := e.history(alice, "g:"+g.Group, ""); len(got) != 0 {
		t.Errorf("the group holds %d messages after the refusals, want 0", len(got))
	}
	var l groupList
	e.ok(req{Method: get, Path: "/api/v1/groups", Auth: alice}, http.StatusOK, &l)
	if len(l.Groups) != 1 || fmt.Sprint(l.Groups[0].Members) != "[alice bob]" {
		t.Errorf("alice's groups after the refusals: %+v", l.Groups)
	}
}

// TestServiceCallsDisabled: with no service credential configured, a
// service credential is refused like any bad token, whatever it holds.
func TestServiceCallsDisabled(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.ServiceCredential = "" })
	for _, cred := range []string{"svc:", "svc:" + serviceCredential, "svc:x"} {
		r := e.do(req{Method: http.MethodGet, Path: "/api/v1/groups?as=alice", Auth: "Bearer " + cred})
		if r.Status != http.StatusUnauthorized || r.errorCode(t) != string(wire.CodeUnauthorized) {
			t.Errorf("%q: %d %s", cred, r.Status, r.Body)
		}
	}
	// Users still work.
	e.send(e.user("alice", "phone"), `{"to":"bob","clientMsgId":"c","body":"x"}`)
}

// TestInfrastructureErrorsAreNotShown: the text of a PostgreSQL or Redis
// error never reaches the client; the code does, with a fixed text, and
// the cause goes to the log.
func TestInfrastructureErrorsAreNotShown(t *testing.T) {
	const cause = "dial tcp 10.1.2.3:6379: connect: connection refused (user=parley)"
	var failWith error
	var logged bytes.Buffer
	e := newEnv(t, func(c *httpapi.Config) {
		c.Online = func(context.Context, domain.AccountID) ([]domain.DeviceID, error) { return nil, failWith }
		c.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	})
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   wire.Code
		wantText   string
	}{
		{"unavailable", fmt.Errorf("%w: %s", api.ErrUnavailable, cause), 503, wire.CodeUnavailable, "the service cannot answer now; retry"},
		{"internal", errors.New(cause), 500, wire.CodeInternal, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			failWith = tc.err
			logged.Reset()
			r := e.do(req{Method: http.MethodGet, Path: "/api/v1/accounts/alice/online", Auth: service()})
			var body errorBody
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.wantStatus || body.Code != string(tc.wantCode) || body.Error != tc.wantText {
				t.Errorf("got %d %s, want %d %s %q", r.Status, r.Body, tc.wantStatus, tc.wantCode, tc.wantText)
			}
			if strings.Contains(string(r.Body), "10.1.2.3") {
				t.Errorf("the answer shows the cause: %s", r.Body)
			}
			if !strings.Contains(logged.String(), "10.1.2.3") {
				t.Errorf("the cause is not logged: %q", logged.String())
			}
		})
	}
}

// A request with two Authorization headers is refused: which one a proxy
// added and which the client sent cannot be told apart, so neither is
// taken (the first used to be).
func TestTwoAuthorizationHeaders(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.user("alice", "phone"), e.user("bob", "phone")
	hr, err := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/conversations", nil)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Add("Authorization", alice)
	hr.Header.Add("Authorization", bob)
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("two Authorization headers: %d, WWW-Authenticate %q; want 401 with it", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}
