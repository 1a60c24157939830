package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
)

const consoleCredential = "console-service-credential-0123"

// consoleReq is one request to the console's API.
type consoleReq struct {
	method, path string
	host         string // default the listener's address
	contentType  string
	body         string
	header       map[string]string
}

// consoleDo sends r to the node at addr and returns the status (and the
// first line of an event stream, which it doesn't read further).
func consoleDo(t *testing.T, addr string, r consoleReq) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, "http://"+addr+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.host != "" {
		req.Host = r.host
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
			t.Errorf("event stream starts with %q, %v", line, err)
		}
	}
	return resp.StatusCode
}

// Development tokens, and the status and event stream without a
// credential, are for requests from this machine's own console only: a
// loopback Host (not a name rebound to 127.0.0.1), no other site's Origin,
// a JSON body. Anyone else needs the service credential for the status and
// the events, and gets no token at all.
func TestConsoleDevTokensAreLocal(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Console, c.DevTokens, c.ServiceCredential = true, true, consoleCredential
	})
	addr := s.n.Addr()
	_, port, _ := net.SplitHostPort(addr)
	const mintBody = `{"account":"alice","device":"web"}`
	mint := func(host, contentType string, header map[string]string) consoleReq {
		return consoleReq{method: http.MethodPost, path: "/console/api/token", host: host, contentType: contentType, body: mintBody, header: header}
	}
	const json = "application/json"
	svc := map[string]string{"Authorization": "Bearer svc:" + consoleCredential}
	tests := []struct {
		name string
		req  consoleReq
		want int
	}{
		{"mint", mint("", json, nil), 200},
		{"mint from the console's own origin", mint("", json, map[string]string{"Origin": "http://" + addr, "Sec-Fetch-Site": "same-origin"}), 200},
		{"mint as localhost", mint("localhost:"+port, json, map[string]string{"Origin": "http://localhost:" + port}), 200},
		{"mint with a charset", mint("", "application/json; charset=utf-8", nil), 200},
		{"Host evil.example (DNS rebinding)", mint("evil.example", json, nil), 403},
		{"Host evil.example with the port", mint("evil.example:"+port, json, nil), 403},
		{"Host 127.0.0.1.nip.io", mint("127.0.0.1.nip.io:"+port, json, nil), 403},
		{"Origin evil.example", mint("", json, map[string]string{"Origin": "http://evil.example"}), 403},
		{"Origin null", mint("", json, map[string]string{"Origin": "null"}), 403},
		{"Origin of another local port", mint("", json, map[string]string{"Origin": "http://127.0.0.1:1"}), 403},
		{"Origin with https", mint("", json, map[string]string{"Origin": "https://" + addr}), 403},
		{"cross-site fetch", mint("", json, map[string]string{"Sec-Fetch-Site": "cross-site"}), 403},
		{"through a proxy", mint("", json, map[string]string{"X-Forwarded-For": "203.0.113.9"}), 403},
		{"text/plain (a simple cross-origin request)", mint("", "text/plain", nil), 415},
		{"form", mint("", "application/x-www-form-urlencoded", nil), 415},
		{"no content type", mint("", "", nil), 415},
		{"a credential buys no token", mint("evil.example", json, svc), 403},

		{"status, local", consoleReq{method: http.MethodGet, path: "/console/api/status"}, 200},
		{"status, Host evil.example", consoleReq{method: http.MethodGet, path: "/console/api/status", host: "evil.example"}, 401},
		{"status, Origin evil.example", consoleReq{method: http.MethodGet, path: "/console/api/status", header: map[string]string{"Origin": "http://evil.example"}}, 401},
		{"status, Host evil.example with the credential", consoleReq{method: http.MethodGet, path: "/console/api/status", host: "evil.example", header: svc}, 200},
		{"status, wrong credential", consoleReq{method: http.MethodGet, path: "/console/api/status", host: "evil.example", header: map[string]string{"Authorization": "Bearer svc:" + consoleCredential + "x"}}, 401},
		{"events, local", consoleReq{method: http.MethodGet, path: "/console/api/events"}, 200},
		{"events, Host evil.example", consoleReq{method: http.MethodGet, path: "/console/api/events", host: "evil.example"}, 401},
		{"events, Origin evil.example", consoleReq{method: http.MethodGet, path: "/console/api/events", header: map[string]string{"Origin": "http://evil.example"}}, 401},
		{"events, Host evil.example with the credential", consoleReq{method: http.MethodGet, path: "/console/api/events", host: "evil.example", header: svc}, 200},

		// The page itself is not a secret.
		{"the page, Host evil.example", consoleReq{method: http.MethodGet, path: "/console/", host: "evil.example"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := consoleDo(t, addr, tc.req); got != tc.want {
				t.Errorf("%s %s (Host %q): %d, want %d", tc.req.method, tc.req.path, tc.req.host, got, tc.want)
			}
		})
	}
}

// Without development tokens the status and the event stream need the
// service credential even from this machine, and without a service
// credential they are closed.
func TestConsoleNeedsCredential(t *testing.T) {
	for _, cred := range []string{consoleCredential, ""} {
		s := startServer(t, func(c *node.Config) { c.Console, c.ServiceCredential = true, cred })
		addr := s.n.Addr()
		for _, path := range []string{"/console/api/status", "/console/api/events"} {
			if got := consoleDo(t, addr, consoleReq{method: http.MethodGet, path: path}); got != 401 {
				t.Errorf("credential %q: %s without one: %d, want 401", cred, path, got)
			}
			want := 200
			if cred == "" {
				want = 401
			}
			if got := consoleDo(t, addr, consoleReq{method: http.MethodGet, path: path, header: map[string]string{"Authorization": "Bearer svc:" + consoleCredential}}); got != want {
				t.Errorf("credential %q: %s with the credential: %d, want %d", cred, path, got, want)
			}
		}
		// The page asks for a credential.
		resp, err := http.Get("http://" + addr + "/console/api/config")
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]bool
		_ = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		if c["devTokens"] || !c["credential"] {
			t.Errorf("config %v", c)
		}
	}
}

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A listener that is not loopback gets no development tokens: auto turns
// them off, on refuses to start without --dev-tokens-unsafe, and the start
// warns whenever they are on.
func TestConsoleDevTokensListener(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--listen", "localhost:8080"}, true},
		{[]string{"--listen", "[::1]:8080"}, true},
		{[]string{"--listen", "0.0.0.0:8080"}, false},
		{[]string{"--listen", ":8080"}, false},
		{[]string{"--listen", "192.0.2.10:8080"}, false},
		{[]string{"--listen", "0.0.0.0:8080", "--dev-tokens", "on", "--dev-tokens-unsafe"}, true},
	} {
		cfg, err := parseServe(tc.args, &bytes.Buffer{})
		if err != nil || cfg.DevTokens != tc.want {
			t.Errorf("%q: dev tokens %v, want %v (%v)", tc.args, cfg.DevTokens, tc.want, err)
		}
	}
	// Without the acknowledgement, the flags' check refuses it among the
	// other problems, all at once.
	_, err := parseServe([]string{"--listen", "0.0.0.0:8080", "--dev-tokens", "on", "--lease", "0s"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "2 problems") || !strings.Contains(err.Error(), "--dev-tokens-unsafe") || !strings.Contains(err.Error(), "--lease") {
		t.Errorf("dev tokens on 0.0.0.0 with a bad lease: %v, want both problems", err)
	}

	base := func(dir string) node.Config {
		c := node.Config{DataDir: dir, Listen: "0.0.0.0:0", TokenSecret: testSecret, Logger: testLogger(), Console: true, DevTokens: true}
		c.EmbeddedBroker.Addr = "127.0.0.1:0"
		c.Kafka.Partitions = 4
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := node.Start(ctx, base(t.TempDir())); err == nil || !strings.Contains(err.Error(), "--dev-tokens-unsafe") {
		if n != nil {
			_ = n.Shutdown(ctx)
		}
		t.Fatalf("dev tokens on 0.0.0.0 without the acknowledgement: %v, want a refusal naming --dev-tokens-unsafe", err)
	}

	// Acknowledged: the node starts, warns, and still checks Host.
	var logs lockedBuffer
	s := startServer(t, func(c *node.Config) {
		*c = base(c.DataDir)
		c.DevTokensUnsafe = true
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if !strings.Contains(logs.String(), "level=WARN msg=\"development tokens are on") {
		t.Errorf("no warning at start:\n%s", logs.String())
	}
	_, port, _ := net.SplitHostPort(s.n.Addr())
	local := net.JoinHostPort("127.0.0.1", port)
	if got := consoleDo(t, local, consoleReq{method: http.MethodPost, path: "/console/api/token", contentType: "application/json", body: `{"account":"a","device":"b"}`}); got != 200 {
		t.Errorf("mint with --dev-tokens-unsafe: %d", got)
	}
	if got := consoleDo(t, local, consoleReq{method: http.MethodPost, path: "/console/api/token", host: "evil.example", contentType: "application/json", body: `{"account":"a","device":"b"}`}); got != 403 {
		t.Errorf("mint with --dev-tokens-unsafe and Host evil.example: %d, want 403", got)
	}
}
