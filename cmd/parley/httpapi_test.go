package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
)

// The HTTP API is served by the node itself, beside /ws: a message sent
// over HTTP is pushed over the socket, and a service sees who is online.
func TestHTTPAPIIsServed(t *testing.T) {
	const cred = "service-credential-for-tests"
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = cred })
	bob := s.device("bob", "phone")
	base := "http://" + s.n.Addr() + "/api/v1"

	req, _ := http.NewRequest(http.MethodPost, base+"/messages", strings.NewReader(`{"to":"bob","clientMsgId":"h1","body":"over http"}`))
	req.Header.Set("Authorization", "Bearer "+s.token("alice", "web", time.Hour))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ack wire.ServerFrame
	_ = json.NewDecoder(resp.Body).Decode(&ack)
	resp.Body.Close()
	if resp.StatusCode != 200 || ack.MsgID == 0 {
		t.Fatalf("send over HTTP: %d %+v", resp.StatusCode, ack)
	}
	if got := bob.waitPushes(t, 1)[0].Message; got.Body != "over http" || got.MsgID != ack.MsgID {
		t.Errorf("push %+v", got)
	}

	req, _ = http.NewRequest(http.MethodGet, base+"/accounts/bob/online", nil)
	req.Header.Set("Authorization", "Bearer svc:"+cred)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var online map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&online)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(jsonString(online), "phone") {
		t.Errorf("online: %d %v", resp.StatusCode, online)
	}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

// Clients that ask for a huge sync page and never read the answer hold at
// most one page each: the reply says how long it is up front, that length
// is bounded by the page's byte budget, and a client that reads is served
// meanwhile.
func TestHTTPSyncRepliesAreBounded(t *testing.T) {
	const cred = "service-credential-for-tests"
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = cred })
	base := "http://" + s.n.Addr() + "/api/v1"
	bob := s.token("bob", "web", time.Hour)
	huge := strings.Repeat(`\u0000`, domain.MaxBodyBytes) // 96 KiB of JSON per message
	// Sent by a service, which no send budget slows down: alice's would
	// let ten of these through at once.
	for i := range 40 {
		req, _ := http.NewRequest(http.MethodPost, base+"/messages", strings.NewReader(fmt.Sprintf(`{"from":{"account":"alice","device":"web"},"to":"bob","clientMsgId":"h%d","body":"%s"}`, i, huge)))
		req.Header.Set("Authorization", "Bearer svc:"+cred)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("send %d: %d", i, resp.StatusCode)
		}
	}
	// Uncut, the page of 40 messages would be about 3.9 MB.
	const maxReply = httpapi.DefaultSyncPageBytes + 100<<10
	syncReq := "GET /api/v1/conversations/d:alice:bob/messages?limit=200 HTTP/1.1\r\nHost: " + s.n.Addr() +
		"\r\nAuthorization: Bearer " + bob + "\r\n\r\n"

	const idle = 20
	held0 := liveHeap()
	conns := make([]net.Conn, idle)
	for i := range conns {
		c, err := net.Dial("tcp", s.n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, syncReq); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}

	// A client that reads gets its page at once.
	req, _ := http.NewRequest(http.MethodGet, base+"/conversations/d:alice:bob/messages?limit=200", nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	// Generous: under -race on a loaded machine the 20 pages being cut
	// take seconds of CPU; what matters is that this one is not queued
	// behind their writes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("a reading client is not served while %d don't read: %v", idle, err)
	}
	var page struct {
		Messages []wire.Message `json:"messages"`
		HasMore  bool           `json:"hasMore"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(page.Messages) == 0 || len(page.Messages) >= 40 || !page.HasMore {
		t.Fatalf("reading client: %d, %d messages, hasMore %v, %v", resp.StatusCode, len(page.Messages), page.HasMore, err)
	}

	legit(t, s, "during-idle-http")
	// Held replies cost at most about a page each, not the 78 MB the
	// uncut pages would.
	time.Sleep(500 * time.Millisecond)
	if grew := liveHeap() - held0; grew > 2*idle*maxReply {
		t.Errorf("%d non-reading clients hold %d MiB of live heap, want under %d MiB", idle, grew>>20, 2*idle*maxReply>>20)
	} else {
		t.Logf("%d non-reading clients hold %d KiB of live heap", idle, grew>>10)
	}

	// Each idle client's answer is announced as one bounded page.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		r.Body.Close()
		if r.StatusCode != 200 || r.ContentLength <= 0 || r.ContentLength > maxReply {
			t.Errorf("idle client %d: status %d, Content-Length %d, want at most %d", i, r.StatusCode, r.ContentLength, maxReply)
		}
	}
}
