package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

func waitClosed(t *testing.T, c *client.Client, within time.Duration) (uint16, string) {
	t.Helper()
	select {
	case <-c.Done():
		return c.CloseReason()
	case <-time.After(within):
		t.Fatalf("connection still open after %v", within)
		return 0, ""
	}
}

func assertAlive(t *testing.T, c *client.Client) {
	t.Helper()
	if _, err := c.Do(ctxT(t), wire.Request{Type: wire.TypePing}); err != nil {
		t.Fatalf("connection should survive, ping failed: %v", err)
	}
}

// A second live connection of the same account/device is refused; the first
// keeps working. A connection that went silent past the heartbeat is taken
// over instead, and learns why.
func TestDuplicateLogin(t *testing.T) {
	t.Run("live connection refuses the second", func(t *testing.T) {
		s := startServer(t, nil)
		first := s.dial("alice", "phone")
		second, err := client.Connect(ctxT(t), client.Config{URL: s.url(), Token: s.token("alice", "phone", time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = second.Hello(ctxT(t))
		if client.CodeOf(err) != wire.CodeDuplicateLogin {
			t.Fatalf("second hello: %v, want duplicate_login", err)
		}
		if code, reason := waitClosed(t, second, 5*time.Second); code != wire.CloseDuplicateLogin || reason != "duplicate_login" {
			t.Errorf("second closed with %d %q", code, reason)
		}
		assertAlive(t, first)
		// Another device of the same account is not a duplicate.
		s.dial("alice", "laptop")
	})
	t.Run("silent connection is taken over", func(t *testing.T) {
		s := startServer(t, func(c *node.Config) {
			c.Gateway.Heartbeat = time.Second
			c.Gateway.SweepInterval = time.Hour // only the takeover may close it
		})
		silent := s.dial("alice", "phone", func(c *client.Config) { c.PingInterval = -1 })
		time.Sleep(1500 * time.Millisecond)
		s.dial("alice", "phone")
		if code, reason := waitClosed(t, silent, 5*time.Second); code != wire.CloseReplaced || reason != wire.ReasonReplaced {
			t.Errorf("silent connection closed with %d %q", code, reason)
		}
	})
	t.Run("closed connection frees the device at once", func(t *testing.T) {
		s := startServer(t, nil)
		first := s.dial("alice", "phone")
		first.Drop()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := s.tryDial("alice", "phone")
			if err == nil {
				c.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("reconnect after a dropped connection: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// The welcome carries the lease and server time; an unrenewed lease closes
// the connection with lease_expired, renewing keeps it; a silent connection
// is closed with heartbeat_timeout; no hello in time closes with hello_timeout.
func TestLeaseHeartbeatAndHelloDeadlines(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.Lease = time.Second
		c.Gateway.Heartbeat = 1500 * time.Millisecond
		c.Gateway.HelloTimeout = 500 * time.Millisecond
		c.Gateway.SweepInterval = 50 * time.Millisecond
	})
	t.Run("welcome", func(t *testing.T) {
		c := s.dial("w", "phone")
		w := c.Welcome()
		now := time.Now().UnixMilli()
		if w.LeaseMs != 1000 || w.HeartbeatMs != 1500 || w.UniqueID != "w/phone" ||
			w.ServerTime < now-5000 || w.ServerTime > now+5000 || w.LeaseUntil != w.ServerTime+1000 {
			t.Errorf("welcome %+v", w)
		}
	})
	t.Run("unrenewed lease expires", func(t *testing.T) {
		c := s.dial("a", "phone", func(c *client.Config) { c.DisableAutoRenew = true })
		if code, reason := waitClosed(t, c, 5*time.Second); code != wire.CloseLeaseExpired || reason != wire.ReasonLeaseExpired {
			t.Errorf("closed with %d %q", code, reason)
		}
	})
	t.Run("renewed lease lives on", func(t *testing.T) {
		c := s.dial("b", "phone")
		select {
		case <-c.Done():
			code, reason := c.CloseReason()
			t.Fatalf("renewed connection closed: %d %q", code, reason)
		case <-time.After(2500 * time.Millisecond):
		}
		f, err := c.Renew(ctxT(t))
		if err != nil || f.Type != wire.TypeRenewed || f.LeaseUntil <= f.ServerTime {
			t.Errorf("renew: %+v %v", f, err)
		}
	})
	t.Run("lease never outlives the token", func(t *testing.T) {
		c, err := client.Dial(ctxT(t), client.Config{URL: s.url(), Token: s.token("tok", "phone", 500*time.Millisecond), DisableAutoRenew: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		w := c.Welcome()
		if w.LeaseUntil > w.ServerTime+1000 {
			t.Errorf("lease until %d: want the configured 1 s at most", w.LeaseUntil)
		}
		f, err := c.Do(ctxT(t), wire.Request{Type: wire.TypeRenew, Token: s.token("tok", "phone", time.Hour)})
		if err != nil || f.LeaseUntil != f.ServerTime+1000 {
			t.Errorf("renew with a fresh token: %+v %v", f, err)
		}
		_, err = c.Do(ctxT(t), wire.Request{Type: wire.TypeRenew, Token: s.token("someone-else", "phone", time.Hour)})
		if client.CodeOf(err) != wire.CodeUnauthorized {
			t.Errorf("renew with another device's token: %v, want unauthorized", err)
		}
	})
	t.Run("no hello", func(t *testing.T) {
		c, err := client.Connect(ctxT(t), client.Config{URL: s.url()})
		if err != nil {
			t.Fatal(err)
		}
		if code, reason := waitClosed(t, c, 5*time.Second); code != wire.CloseHelloTimeout || reason != wire.ReasonHelloTimeout {
			t.Errorf("closed with %d %q", code, reason)
		}
	})
}

// A lease ends with the token it was granted on, plus the clock skew the
// token's check allows: a token taken within the skew (expired by the
// server's clock) gets a lease that has not ended yet, not a close at once.
func TestLeaseEndsWithTheTokenPlusTheSkew(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.Gateway.SweepInterval = 50 * time.Millisecond })
	skew := auth.Leeway.Milliseconds()
	for device, ttl := range map[string]time.Duration{"soon": 500 * time.Millisecond, "expired": -2 * time.Second} {
		t.Run(device, func(t *testing.T) {
			c, err := client.Dial(ctxT(t), client.Config{URL: s.url(), Token: s.token("skew", device, ttl), DisableAutoRenew: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w := c.Welcome()
			// exp is in whole seconds: it is at most a second before
			// the time asked.
			exp := w.ServerTime + ttl.Milliseconds()
			if w.LeaseUntil > exp+skew || w.LeaseUntil < exp-1000+skew-1000 {
				t.Errorf("lease until %d, want about %d (exp %d plus the skew)", w.LeaseUntil, exp+skew, exp)
			}
			time.Sleep(300 * time.Millisecond)
			assertAlive(t, c)
			// A renew takes such a token too, as the hello did.
			if f, err := c.Do(ctxT(t), wire.Request{Type: wire.TypeRenew, Token: s.token("skew", device, ttl)}); err != nil || f.Type != wire.TypeRenewed {
				t.Errorf("renew with a token within the skew: %+v, %v", f, err)
			}
		})
	}
}

// A connection that stays silent past the heartbeat is closed with
// heartbeat_timeout; pings keep it open.
func TestHeartbeat(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.Heartbeat = time.Second
		c.Gateway.SweepInterval = 50 * time.Millisecond
	})
	pinging := s.dial("a", "phone")
	silent := s.dial("b", "phone", func(c *client.Config) { c.PingInterval = -1 })
	if code, reason := waitClosed(t, silent, 5*time.Second); code != wire.CloseHeartbeatTimeout || reason != wire.ReasonHeartbeatTimeout {
		t.Errorf("silent connection closed with %d %q", code, reason)
	}
	assertAlive(t, pinging)
}

// WebSocket pings long after the server's last write are answered: every
// write sets its own deadline (a pong once failed on the stale deadline of
// the frame before it, dropping idle connections at their first ping).
func TestPingsKeepIdleConnectionsOpen(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.Gateway.WriteTimeout = 200 * time.Millisecond })
	c := s.dial("alice", "phone", func(c *client.Config) { c.PingInterval = 500 * time.Millisecond })
	select {
	case <-c.Done():
		code, reason := c.CloseReason()
		t.Fatalf("idle pinging connection closed: %d %q", code, reason)
	case <-time.After(2 * time.Second):
	}
	assertAlive(t, c)
}

// Bad input through the real socket: each gets its documented code, the
// connection survives unless documented otherwise, and nothing accepted
// before is lost.
func TestBadInput(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "keep", "text", "accepted before"); err != nil {
		t.Fatal(err)
	}
	g, err := alice.CreateGroup(ctx, "private")
	if err != nil {
		t.Fatal(err)
	}
	mallory := s.dial("mallory", "phone")

	tests := []struct {
		name  string
		c     *client.Client
		id    string
		frame string
		code  wire.Code
	}{
		{"malformed JSON", mallory, "1", `{"id":"1","type":`, wire.CodeBadFrame},
		{"malformed JSON keeps a readable id", mallory, "7", `{"id":"7","type":"send","body":}`, wire.CodeBadFrame},
		{"not an object", mallory, "", `["send"]`, wire.CodeBadFrame},
		{"empty frame", mallory, "", ``, wire.CodeBadFrame},
		{"unknown type", mallory, "2", `{"id":"2","type":"teleport"}`, wire.CodeUnknownType},
		{"missing id", mallory, "", `{"type":"ping"}`, wire.CodeInvalidArgument},
		{"missing type", mallory, "3", `{"id":"3"}`, wire.CodeInvalidArgument},
		{"wrong field type", mallory, "4", `{"id":"4","type":"sync","lastMsgId":"x"}`, wire.CodeBadFrame},
		{"wrong field type behind another type's", mallory, "22", `{"id":"22","type":"sync","body":5,"lastMsgId":"x"}`, wire.CodeBadFrame},
		{"send without target", mallory, "5", `{"id":"5","type":"send","clientMsgId":"a","body":"x"}`, wire.CodeInvalidArgument},
		{"send without client message id", mallory, "6", `{"id":"6","type":"send","to":"bob","body":"x"}`, wire.CodeInvalidArgument},
		{"send to a bad account id", mallory, "8", `{"id":"8","type":"send","to":"bob/evil","clientMsgId":"a","body":"x"}`, wire.CodeInvalidArgument},
		{"send to both account and group", mallory, "9", `{"id":"9","type":"send","to":"bob","group":"x","clientMsgId":"a"}`, wire.CodeInvalidArgument},
		{"oversize body", mallory, "10", `{"id":"10","type":"send","to":"bob","clientMsgId":"big","body":"` + strings.Repeat("x", 16<<10+1) + `"}`, wire.CodeTooLarge},
		{"non-member group send", mallory, "11", `{"id":"11","type":"send","group":"` + g.Group + `","clientMsgId":"g","body":"x"}`, wire.CodeNotMember},
		{"send to a missing group", mallory, "12", `{"id":"12","type":"send","group":"nogroup","clientMsgId":"g","body":"x"}`, wire.CodeNotFound},
		{"sync of someone else's conversation", mallory, "13", `{"id":"13","type":"sync","conversation":"d:alice:bob"}`, wire.CodeForbidden},
		{"sync of a non-member group", mallory, "14", `{"id":"14","type":"sync","conversation":"g:` + g.Group + `"}`, wire.CodeNotMember},
		{"sync of a malformed conversation", mallory, "15", `{"id":"15","type":"sync","conversation":"x:y"}`, wire.CodeInvalidArgument},
		{"sync with a negative cursor", mallory, "16", `{"id":"16","type":"sync","conversation":"d:bob:mallory","lastMsgId":-1}`, wire.CodeInvalidArgument},
		{"hello twice", mallory, "17", `{"id":"17","type":"hello","token":"x"}`, wire.CodeHelloRepeated},
		{"group with too many members", mallory, "18", `{"id":"18","type":"group_create","accounts":[` + strings.TrimSuffix(strings.Repeat(`"m",`, 501), ",") + `]}`, wire.CodeTooLarge},
		{"remove from a missing group", mallory, "19", `{"id":"19","type":"group_remove","group":"nogroup","accounts":["a"]}`, wire.CodeNotFound},
		{"conversations with a negative limit", mallory, "20", `{"id":"20","type":"conversations","limit":-1}`, wire.CodeInvalidArgument},
		{"conversations with a negative since", mallory, "21", `{"id":"21","type":"conversations","since":-1}`, wire.CodeInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.c.DoRaw(ctx, tc.id, []byte(tc.frame))
			if client.CodeOf(err) != tc.code {
				t.Fatalf("got %+v %v, want code %s", f, err, tc.code)
			}
			if f.Error == "" {
				t.Errorf("error frame without text: %+v", f)
			}
			assertAlive(t, tc.c)
		})
	}

	t.Run("fields of another type are ignored, whatever their type", func(t *testing.T) {
		for id, frame := range map[string]string{
			"23": `{"id":"23","type":"ping","to":5,"limit":"x"}`,
			"24": `{"id":"24","type":"sync","conversation":"d:bob:mallory","body":5,"accounts":"x"}`,
		} {
			f, err := mallory.DoRaw(ctx, id, []byte(frame))
			if err != nil || f.Type == wire.TypeError {
				t.Errorf("%s: got %+v %v, want an answer", frame, f, err)
			}
		}
	})
	t.Run("request before hello", func(t *testing.T) {
		c, err := client.Connect(ctx, client.Config{URL: s.url()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Do(ctx, wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: "x"})
		if client.CodeOf(err) != wire.CodeHelloRequired {
			t.Fatalf("got %v, want hello_required", err)
		}
	})
	for _, tc := range []struct {
		name  string
		token string
		code  wire.Code
	}{
		{"garbage token", "not-a-token", wire.CodeUnauthorized},
		{"missing token", "", wire.CodeUnauthorized},
		{"expired token", s.token("alice", "old", -time.Minute), wire.CodeTokenExpired},
		{"token signed with another secret", func() string {
			tok, _ := testTokens(t, "another-secret-0123456789abcdefghij").Mint("alice", "x", time.Hour)
			return tok
		}(), wire.CodeUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Connect(ctx, client.Config{URL: s.url(), Token: tc.token})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Hello(ctx)
			if client.CodeOf(err) != tc.code {
				t.Fatalf("hello: %v, want %s", err, tc.code)
			}
			if code, reason := waitClosed(t, c, 5*time.Second); code != wire.CloseUnauthorized || reason != string(tc.code) {
				t.Errorf("closed with %d %q", code, reason)
			}
		})
	}
	t.Run("oversize frame closes with 1009", func(t *testing.T) {
		c := s.dial("big", "phone")
		_, err := c.DoRaw(ctx, "1", []byte(`{"id":"1","type":"ping","pad":"`+strings.Repeat("x", wire.MaxFrameBytes)+`"}`))
		if err == nil {
			t.Fatal("oversize frame answered")
		}
		if code, _ := waitClosed(t, c, 5*time.Second); code != wire.CloseTooBig {
			t.Errorf("closed with %d, want %d", code, wire.CloseTooBig)
		}
	})
	t.Run("binary frame", func(t *testing.T) {
		c := s.dial("bin", "phone")
		var got wire.ServerFrame
		done := make(chan error, 1)
		go func() {
			var err error
			got, err = c.DoRaw(ctx, "", nil) // waits for the id-less error
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		_ = rawConn(c).WriteMessage(gws.OpcodeBinary, []byte{0, 1, 2})
		if err := <-done; client.CodeOf(err) != wire.CodeBadFrame {
			t.Fatalf("binary frame: %+v %v", got, err)
		}
		assertAlive(t, c)
	})

	// Whatever happened above, what was accepted is still there.
	assertLog(t, "history", history(t, alice, "d:alice:bob"), []string{"accepted before"})
}

// A flood of sends is answered with rate_limited for the excess; every
// acknowledged message is stored, no refused one is, and the connection
// lives on.
func TestFloodIsRateLimitedWithoutLoss(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.RatePerSecond = 20
		c.Gateway.RateBurst = 10
	})
	ctx := ctxT(t)
	flooder := s.dial("flood", "phone")
	var mu sync.Mutex
	acked := map[string]bool{}
	limited := 0
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprint("f", i)
			_, err := flooder.Do(ctx, wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: body, Body: body})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				acked[body] = true
			case client.CodeOf(err) == wire.CodeRateLimited:
				var se *client.Error
				if errors.As(err, &se) && se.RetryAfter <= 0 {
					t.Errorf("rate_limited without retryAfterMs")
				}
				limited++
			default:
				t.Errorf("send %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if limited == 0 || len(acked) == 0 {
		t.Fatalf("acked %d, limited %d: want both", len(acked), limited)
	}
	time.Sleep(time.Second)
	assertAlive(t, flooder)
	got := history(t, flooder, "d:bob:flood")
	if len(got) != len(acked) {
		t.Errorf("history has %d messages, %d were acknowledged", len(got), len(acked))
	}
	for _, m := range got {
		if !acked[m.Body] {
			t.Errorf("stored %q, which was refused", m.Body)
		}
	}
}

// A device that stops reading is disconnected as a slow consumer instead of
// holding pushes forever or missing them silently; it reconnects and syncs
// every message (I5).
func TestSlowConsumerIsDisconnectedAndResyncs(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.MaxReplyBytes = 64 << 10
		c.Gateway.MaxQueuedBytes = 400 << 10
		c.Gateway.RatePerSecond = 100000
		c.Gateway.RateBurst = 100000
	})
	ctx := ctxT(t)
	// A raw connection that says hello and then never reads.
	stalled, _, err := gws.NewClient(gws.BuiltinEventHandler{}, &gws.ClientOption{Addr: s.url()})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.NetConn().Close()
	hello := fmt.Sprintf(`{"id":"1","type":"hello","token":%q}`, s.token("slow", "phone", time.Hour))
	if err := stalled.WriteString(hello); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(s.n.Gateway().Online("slow")) == 1 })

	sender := s.dial("fast", "phone")
	body := strings.Repeat("p", 16<<10)
	sent := 0
	for sent < 2000 && len(s.n.Gateway().Online("slow")) == 1 {
		_, err := sender.Send(ctx, client.Target{Account: "slow"}, fmt.Sprint(sent), "", body)
		if errors.Is(err, client.ErrClosed) {
			// The sender gets the pushes of its own sends, in the same
			// bursts, through the same tiny queue: it may be closed as a
			// slow consumer too. Like a real client it comes back and
			// retries.
			sender = s.dial("fast", "phone")
			_, err = sender.Resend(ctx, client.Target{Account: "slow"}, fmt.Sprint(sent), "", body)
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
	}
	waitFor(t, func() bool { return len(s.n.Gateway().Online("slow")) == 0 })
	t.Logf("disconnected after %d pushes of 16 KiB", sent)
	if _, m := httpGet(t, "http://"+s.n.Addr()+"/metrics"); metric(t, m, `parley_disconnects_total{reason="slow_consumer"}`) < 1 {
		t.Error("the slow-consumer disconnect is not counted in /metrics")
	}

	// Like a real client, reconnect and sync until it holds everything: the
	// pushes still in flight may overrun this test's tiny queue again.
	for attempt := 0; ; attempt++ {
		back := s.device("slow", "phone")
		err := back.inbox.SyncAll(ctx)
		if err == nil {
			if got := back.inbox.Messages("d:fast:slow"); len(got) != sent {
				t.Errorf("resynced %d messages, %d were sent", len(got), sent)
			}
			break
		}
		if attempt == 10 {
			t.Fatalf("cannot resync: %v", err)
		}
		// Closed again, or no answer while the server works off the
		// backlog of pushes: a real client backs off and tries again.
		back.c.Close()
		time.Sleep(200 * time.Millisecond)
		waitFor(t, func() bool { return len(s.n.Gateway().Online("slow")) == 0 })
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testTokens(t *testing.T, secret string) *auth.Tokens {
	t.Helper()
	tk, err := auth.NewTokens([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func rawConn(c *client.Client) *gws.Conn { return c.Raw() }
