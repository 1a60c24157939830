package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
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
