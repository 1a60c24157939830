package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
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

// Requests whose bodies trickle in hold their address's share of the
// requests under way: past it, the address's next request is refused 429
// at once, whatever its credentials, until they end.
func TestRateLimitInFlightPerAddress(t *testing.T) {
	const most = 4
	e := newEnv(t, func(c *httpapi.Config) { c.RateLimit.InFlightPerIP = most })
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	var held []net.Conn
	for range most + 2 { // more than fit, should a probe overtake one

		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// The headers, and one byte of a 100-byte body.
		fmt.Fprintf(c, "POST /api/v1/messages HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", addr, e.user("slow", "phone"))
		held = append(held, c)
	}
	groups := req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: e.user("alice", "phone")}
	until := func(status int) resp {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := e.do(groups)
			if r.Status == status || time.Now().After(deadline) {
				return r
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Let the slow requests reach the handler before the first probe,
	// which could otherwise take the place of one of them.
	time.Sleep(200 * time.Millisecond)
	r := until(http.StatusTooManyRequests)
	checkRateLimited(t, r)
	if !strings.Contains(string(r.Body), "at once") {
		t.Errorf("refusal %s, want the in-flight one", r.Body)
	}
	if r := e.do(req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: "Bearer not-a-token"}); r.Status != http.StatusTooManyRequests {
		t.Errorf("a bad credential from the full address: %d, want 429", r.Status)
	}
	for _, c := range held {
		c.Close()
	}
	if r := until(http.StatusOK); r.Status != http.StatusOK {
		t.Fatalf("after the slow requests went away: %d %s", r.Status, r.Body)
	}
}

// A trusted API gateway's requests come from one address for all its
// clients: with its secret they are not limited per address, neither in
// rate nor in number under way. Without it, or with a wrong one, the
// same address is limited as any.
func TestTrustedGatewayNotLimitedPerAddress(t *testing.T) {
	const secret = "trusted-gateway-secret-for-tests"
	e := newEnv(t, func(c *httpapi.Config) {
		c.RateLimit.PerIP, c.RateLimit.IPBurst = 1, 5
		c.TrustedGateway.Secret = secret
	})
	get := func(header string) resp {
		r := req{Method: http.MethodGet, Path: "/api/v1/groups", Auth: e.user("alice", "phone")}
		if header != "" {
			r.Header = map[string]string{"X-Parley-Gateway-Secret": header}
		}
		return e.do(r)
	}
	for i := range 20 {
		if r := get(secret); r.Status != http.StatusOK {
			t.Fatalf("trusted request %d: %d %s", i, r.Status, r.Body)
		}
	}
	refused := false
	for range 20 {
		if r := get("not-the-secret-at-all"); r.Status == http.StatusTooManyRequests {
			refused = true
			break
		}
	}
	if !refused {
		t.Error("requests with a wrong secret were not limited per address")
	}
	if r := get(secret); r.Status != http.StatusOK {
		t.Errorf("trusted request after the address was limited: %d", r.Status)
	}
}
