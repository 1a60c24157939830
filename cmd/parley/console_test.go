package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/console"
)

// The console is served by the binary: its page and assets, development
// tokens only when enabled, the live event stream (without message bodies)
// and the instance status.
func TestConsole(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.Console, c.DevTokens = true, true })
	base := "http://" + s.n.Addr()

	for path, want := range map[string]string{"/console/": "<title>Parley console</title>", "/console/app.js": "docs/protocol.md", "/console/style.css": "--accent"} {
		code, body := httpGet(t, base+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, %d bytes, want %q in it", path, code, len(body), want)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noRedirect.Get(base + "/"); err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
		t.Errorf("GET /: %v %v", resp, err)
	}

	mint := func(body string) (int, map[string]string) {
		resp, err := http.Post(base+"/console/api/token", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := mint(`{"account":"alice","device":"web"}`)
	if code != 200 {
		t.Fatalf("mint: %d %v", code, out)
	}
	if id, err := s.n.Tokens().Verify(out["token"]); err != nil || id.Account != "alice" || id.Device != "web" {
		t.Errorf("minted token: %+v %v", id, err)
	}
	for name, body := range map[string]string{"bad account": `{"account":"a/b","device":"web"}`, "not JSON": `{`, "missing device": `{"account":"alice"}`} {
		if code, _ := mint(body); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/console/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	alice := s.dial("alice", "phone")
	ack, err := alice.Send(ctx, client.Target{Account: "bob"}, "c1", "", "secret body")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	found := false
	for !found && sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if strings.Contains(line, "secret body") {
			t.Fatal("the event stream shows a message body")
		}
		var e stream.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		found = e.Type == "MessageSent.v1" && e.MsgID == ack.MsgID && e.Key == "d:alice:bob"
	}
	if !found {
		t.Fatal("the send never appeared in the event stream")
	}

	code, body := httpGet(t, base+"/console/api/status")
	var st console.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || st.Connections != 1 || len(st.Online) != 1 || st.Online[0] != "alice/phone" || len(st.Lag) == 0 {
		t.Errorf("status: %d %s", code, body)
	}
}

// Development tokens are off unless enabled, and the console is off by
// default in scale-out.
func TestConsoleDefaults(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.Console = true })
	resp, err := http.Post("http://"+s.n.Addr()+"/console/api/token", "application/json", strings.NewReader(`{"account":"a","device":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("token minted with development tokens off: %d %s", resp.StatusCode, b)
	}
	single, err := parseServe(nil, &bytes.Buffer{})
	if err != nil || !single.Console || !single.DevTokens {
		t.Errorf("single node: console %v dev tokens %v (%v)", single.Console, single.DevTokens, err)
	}
	cluster, err := parseServe([]string{"--postgres-dsn", "postgres://x", "--redis-addr", "127.0.0.1:6379", "--cluster-secret", "cluster-secret-0123456789"}, &bytes.Buffer{})
	if err != nil || cluster.Console || cluster.DevTokens {
		t.Errorf("scale-out: console %v dev tokens %v (%v)", cluster.Console, cluster.DevTokens, err)
	}
}
