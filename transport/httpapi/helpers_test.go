package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api/apitest"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
)

// testSecret signs the tokens of every test node.
var testSecret = []byte("parley-test-secret-0123456789abcdef")

// serviceCredential is the service secret of every test API.
const serviceCredential = "svc-test-credential-0123456789"

func testLogger() *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// backend is what the API serves: the operations over a log and read
// models in memory (transport/api/apitest), the token verifier, and a list
// of the devices online.
type backend struct {
	api    *apitest.Env
	tokens *auth.Tokens

	mu     sync.Mutex
	online map[domain.AccountID][]domain.DeviceID
}

func startNode(tb testing.TB) *backend {
	tb.Helper()
	tokens, err := auth.New(auth.Config{Secret: testSecret})
	if err != nil {
		tb.Fatal(err)
	}
	return &backend{api: apitest.New(tb), tokens: tokens, online: map[domain.AccountID][]domain.DeviceID{}}
}

// connect lists a device as online, as a gateway would.
func (b *backend) connect(account, device string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.online[domain.AccountID(account)] = append(b.online[domain.AccountID(account)], domain.DeviceID(device))
}

// Tokens is the verifier (and signer) of the backend's tokens.
func (b *backend) Tokens() *auth.Tokens { return b.tokens }

// apiConfig is the API over b with a service credential and b's online
// devices.
func apiConfig(b *backend) httpapi.Config {
	return httpapi.Config{
		Service:           b.api.Service,
		Tokens:            b.tokens,
		ServiceCredential: serviceCredential,
		Online: func(_ context.Context, a domain.AccountID) ([]domain.DeviceID, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			return append([]domain.DeviceID(nil), b.online[a]...), nil
		},
		Logger: testLogger(),
	}
}

// env is a backend with the HTTP API served on a loopback listener.
type env struct {
	t   testing.TB
	n   *backend
	srv *httptest.Server
}

func newEnv(t testing.TB, mod func(*httpapi.Config)) *env {
	t.Helper()
	n := startNode(t)
	cfg := apiConfig(n)
	if mod != nil {
		mod(&cfg)
	}
	h, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, n: n, srv: newServer(t, h)}
}

// newServer serves h on a loopback listener for the test.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// user is the Authorization header of account/device.
func (e *env) user(account, device string) string {
	return "Bearer " + e.mint(account, device, time.Hour)
}

func (e *env) mint(account, device string, ttl time.Duration) string {
	e.t.Helper()
	tok, err := e.n.Tokens().Mint(domain.AccountID(account), domain.DeviceID(device), ttl)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// service is the Authorization header of a service call.
func service() string { return "Bearer svc:" + serviceCredential }

// req is one HTTP request. A non-empty Body is sent as application/json
// unless ContentType says otherwise; NoContentType sends none.
type req struct {
	Method, Path  string
	Auth          string
	Body          string
	ContentType   string
	NoContentType bool
	// Header holds more headers to send.
	Header map[string]string
}

// resp is an answer.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (e *env) do(r req) resp {
	e.t.Helper()
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, r.Method, e.srv.URL+r.Path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.Auth != "" {
		hr.Header.Set("Authorization", r.Auth)
	}
	for k, v := range r.Header {
		hr.Header.Set(k, v)
	}
	switch {
	case r.NoContentType:
	case r.ContentType != "":
		hr.Header.Set("Content-Type", r.ContentType)
	case r.Body != "":
		hr.Header.Set("Content-Type", "application/json")
	}
	res, err := e.srv.Client().Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// ok does r and decodes the answer into v, failing unless it has status want.
func (e *env) ok(r req, want int, v any) {
	e.t.Helper()
	got := e.do(r)
	if got.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", r.Method, r.Path, got.Status, want, got.Body)
	}
	if v != nil {
		if err := json.Unmarshal(got.Body, v); err != nil {
			e.t.Fatalf("%s %s: cannot decode %s: %v", r.Method, r.Path, got.Body, err)
		}
	}
}

// errorBody is an error answer.
type errorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

func (r resp) errorCode(t testing.TB) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("error answer is not JSON: %q", r.Body)
	}
	if e.Error == "" {
		t.Errorf("error answer without text: %s", r.Body)
	}
	return e.Code
}

// ack is the answer to a send.
type ack struct {
	MsgID        int64  `json:"msgId"`
	MessageID    string `json:"messageId"`
	Conversation string `json:"conversation"`
	ServerTime   int64  `json:"serverTime"`
	Duplicate    bool   `json:"duplicate"`
}

// messages is a sync page.
type messages struct {
	Conversation string         `json:"conversation"`
	Messages     []wire.Message `json:"messages"`
	Source       string         `json:"source"`
	HasMore      bool           `json:"hasMore"`
	Next         wire.Cursor    `json:"next"`
}

type conversationList struct {
	Conversations []wire.ConversationInfo `json:"conversations"`
	ServerTime    int64                   `json:"serverTime"`
}

type groupAnswer struct {
	Group wire.GroupInfo `json:"group"`
}

type groupList struct {
	Groups []wire.GroupInfo `json:"groups"`
}

type onlineAnswer struct {
	Account string   `json:"account"`
	Devices []string `json:"devices"`
}

// send sends body (a JSON object) as auth and returns the ack.
func (e *env) send(auth, body string) ack {
	e.t.Helper()
	var a ack
	e.ok(req{Method: http.MethodPost, Path: "/api/v1/messages", Auth: auth, Body: body}, http.StatusOK, &a)
	return a
}

// createGroup creates a group owned by owner with members.
func (e *env) createGroup(owner string, members ...string) wire.GroupInfo {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"name": "test", "accounts": members})
	var g groupAnswer
	e.ok(req{Method: http.MethodPost, Path: "/api/v1/groups", Auth: e.user(owner, "phone"), Body: string(b)}, http.StatusCreated, &g)
	return g.Group
}

// history reads a whole conversation as auth (with query, e.g. "&as=bob").
func (e *env) history(auth, conv, query string) []wire.Message {
	e.t.Helper()
	var out []wire.Message
	var cur wire.Cursor
	for {
		var page messages
		e.ok(req{Method: http.MethodGet, Auth: auth,
			Path: "/api/v1/conversations/" + conv + "/messages?limit=200&lastMsgId=" + itoa(cur.LastMsgID) + query}, http.StatusOK, &page)
		out = append(out, page.Messages...)
		cur = page.Next
		if !page.HasMore {
			return out
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
