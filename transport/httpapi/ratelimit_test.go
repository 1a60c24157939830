package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
)

// rateLimitedReply is a 429's body.
type rateLimitedReply struct {
	Code         string `json:"code"`
	Error        string `json:"error"`
	RetryAfterMs int64  `json:"retryAfterMs"`
}

// hammer sends GET /api/v1/groups as auth until one is refused, at most n
// times, and returns the refusal.
func (e *env) hammer(auth string, n int) (resp, bool) {
	e.t.Helper()
	for range n {
		r := e.do(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: auth})
		if r.Status != http.StatusOK {
			return r, true
		}
	}
	return resp{}, false
}

// checkRateLimited checks a 429: the code, a Retry-After in whole seconds
// and retryAfterMs in the body, as the socket's rate_limited error has.
func checkRateLimited(t *testing.T, r resp) time.Duration {
	t.Helper()
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", r.Status, r.Body)
	}
	var body rateLimitedReply
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Code != string(wire.CodeRateLimited) || body.RetryAfterMs <= 0 {
		t.Errorf("body %s, want rate_limited with retryAfterMs", r.Body)
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 || int64(secs)*1000 < body.RetryAfterMs {
		t.Errorf("Retry-After %q with retryAfterMs %d", r.Header.Get("Retry-After"), body.RetryAfterMs)
	}
	return time.Duration(body.RetryAfterMs) * time.Millisecond
}

// One account that hammers the API is refused with 429 once its burst is
// spent; another account is not affected, and the first one passes again
// after Retry-After.
func TestRateLimitPerAccount(t *testing.T) {
	const burst = 20
	e := newEnv(t, func(c *httpapi.Config) { c.RateLimit.PerAccount, c.RateLimit.AccountBurst = 2, burst })
	alice := e.user("alice", "phone")
	r, refused := e.hammer(alice, 10*burst)
	if !refused {
		t.Fatalf("%d requests of one account, none refused", 10*burst)
	}
	wait := checkRateLimited(t, r)
	// Another device of the same account shares the account's bucket.
	if r := e.do(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: e.user("alice", "laptop")}); r.Status != http.StatusTooManyRequests {
		t.Errorf("alice's other device: %d, want 429", r.Status)
	}
	// Another account is served.
	e.ok(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: e.user("bob", "phone")}, http.StatusOK, nil)
	// A refused send was not accepted.
	if r := e.do(req{Method: http.MethodPost, Path: "/api/v1/messages", Auth: alice, Body: `{"to":"bob","clientMsgId":"limited","body":"x"}`}); r.Status != http.StatusTooManyRequests {
		t.Fatalf("send over the limit: %d %s", r.Status, r.Body)
	}
	time.Sleep(wait)
	e.ok(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: alice}, http.StatusOK, nil)
	if got := e.history(e.user("bob", "phone"), "d:alice:bob", ""); len(got) != 0 {
		t.Errorf("the refused send was stored: %+v", got)
	}
}

// One address is limited whoever it authenticates as, and so are requests
// with bad credentials.
func TestRateLimitPerAddress(t *testing.T) {
	const burst = 10
	e := newEnv(t, func(c *httpapi.Config) { c.RateLimit.PerIP, c.RateLimit.IPBurst = 1, burst })
	refused := false
	for i := range 5 * burst {
		r := e.do(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: e.user(fmt.Sprintf("user%d", i), "phone")})
		if r.Status != http.StatusOK {
			checkRateLimited(t, r)
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("one address was never limited")
	}
	if r := e.do(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: "Bearer not-a-token"}); r.Status != http.StatusTooManyRequests {
		t.Errorf("bad credential from a limited address: %d, want 429", r.Status)
	}
}

// Tracking many accounts never refuses a new one: the buckets are bounded
// by forgetting others, not by turning newcomers away.
func TestRateLimitManyAccounts(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.RateLimit.MaxKeys = 8 })
	for i := range 100 {
		e.ok(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: e.user(fmt.Sprintf("user%d", i), "phone")}, http.StatusOK, nil)
	}
}

// A service acting for many accounts is not limited per account.
func TestRateLimitServiceNotPerAccount(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.RateLimit.PerAccount, c.RateLimit.AccountBurst = 1, 2 })
	for range 10 {
		e.ok(req{Method: http.MethodGet, Path: "/api/v1/groups?as=alice", Auth: service()}, http.StatusOK, nil)
	}
}
