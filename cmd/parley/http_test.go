package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/ws"
)

// shortHTTP is a node whose HTTP timeouts are all one second, so that
// tests can outlive them.
func shortHTTP(c *node.Config) {
	c.HTTP = node.HTTPServer{ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, IdleTimeout: time.Second}
	c.Console, c.DevTokens = true, true
}

// The server's timeouts end idle, slow and stalled HTTP requests, but not
// the long-lived ones: WebSockets and the console's event stream outlive
// every timeout.
func TestHTTPTimeouts(t *testing.T) {
	s := startServer(t, shortHTTP)
	addr := s.n.Addr()

	t.Run("idle keep-alive connections are closed", func(t *testing.T) {
		c := dialTCP(t, addr)
		r := bufio.NewReader(c)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		started := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("an idle keep-alive connection: %v, want EOF", err)
		}
		if d := time.Since(started); d > 5*time.Second {
			t.Errorf("closed after %v, want about 1s", d)
		}
	})

	t.Run("a body that never comes", func(t *testing.T) {
		c := dialTCP(t, addr)
		if _, err := io.WriteString(c, "POST /api/v1/messages HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: Bearer "+s.token("alice", "web", time.Hour)+
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"to\":"); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// The server answers 400 (it cannot read the body) or just closes.
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("the slow request was not ended: %v (%q)", err, b)
		}
		if d := time.Since(started); d > 5*time.Second {
			t.Errorf("ended after %v, want about 1s", d)
		}
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400") {
			t.Errorf("answer to a slow body: %q, want 400 or nothing", b)
		}
	})

	t.Run("headers over the limit", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
		req.Header.Set("X-Padding", strings.Repeat("x", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB of headers: %d, want 431", resp.StatusCode)
		}
	})

	t.Run("websockets outlive the timeouts", func(t *testing.T) {
		alice := s.dial("alice", "phone")
		time.Sleep(2500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "after-timeouts", "", "still here"); err != nil {
			t.Fatalf("a socket older than every HTTP timeout: %v", err)
		}
	})

	t.Run("the event stream outlives the timeouts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/console/api/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("events: %d", resp.StatusCode)
		}
		time.Sleep(2500 * time.Millisecond)
		bob := s.dial("bob", "phone")
		ack, err := bob.Send(ctx, client.Target{Account: "alice"}, "late-event", "", "x")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e stream.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatal(err)
			}
			if e.MsgID == ack.MsgID {
				return
			}
		}
		t.Fatalf("the stream ended before the event of a send after the timeouts: %v", sc.Err())
	})
}

// dialTCP opens a TCP connection to addr, closed with the test.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// One address may have 64 API requests under way; behind a proxy
// (--max-connections-per-ip 0) it may have more, since every client has
// the proxy's address.
func TestHTTPRequestsUnderWayPerAddress(t *testing.T) {
	for _, tc := range []struct {
		name      string
		perIP     int
		wantFirst int
	}{
		{"default", 0, http.StatusTooManyRequests},
		{"behind a proxy", ws.NoLimit, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, func(c *node.Config) { c.Gateway.MaxConnectionsPerIP = tc.perIP })
			tok := s.token("slow", "phone", time.Hour)
			for range 64 + 8 {
				c := dialTCP(t, s.n.Addr())
				// The headers, and one byte of a 100-byte body.
				fmt.Fprintf(c, "POST /api/v1/messages HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", s.n.Addr(), tok)
			}
			get := func() int {
				req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://"+s.n.Addr()+"/api/v1/groups", nil)
				req.Header.Set("Authorization", "Bearer "+s.token("alice", "phone", time.Hour))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			// Give the slow requests time to reach the handler before
			// the first probe, which could otherwise take the place of
			// one of them (refused, it would be gone); then wait for
			// the first refusal, or as long as that would take.
			time.Sleep(500 * time.Millisecond)
			got := get()
			for deadline := time.Now().Add(3 * time.Second); got == http.StatusOK && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				got = get()
			}
			if got != tc.wantFirst {
				t.Errorf("a request beside 72 slow ones: %d, want %d", got, tc.wantFirst)
			}
		})
	}
}
