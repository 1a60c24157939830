package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// A conversation list longer than a page is walked page by page, with
// the last entry of each page as the cursor: every conversation once,
// newest first, the last page without hasMore. Bad cursors are refused.
func TestConversationListPages(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	const peers = 7
	for i := range peers {
		if _, err := alice.Send(ctx, client.Target{Account: fmt.Sprint("peer", i)}, fmt.Sprint("m", i), "", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	all, err := alice.Conversations(ctx, 0)
	if err != nil || len(all) != peers {
		t.Fatalf("the whole list: %d entries, %v", len(all), err)
	}
	var walked []wire.ConversationInfo
	req := wire.Request{Type: wire.TypeConversations, Limit: 3}
	for pages := 0; ; pages++ {
		f, err := alice.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		walked = append(walked, f.Conversations...)
		if !f.HasMore {
			if pages != 2 || len(f.Conversations) != 1 {
				t.Errorf("the last page is page %d with %d entries, want page 2 with 1", pages, len(f.Conversations))
			}
			break
		}
		if pages > peers {
			t.Fatal("the pages never end")
		}
		last := f.Conversations[len(f.Conversations)-1]
		req.Before, req.BeforeConversation = last.LatestTime, last.Conversation
	}
	if fmt.Sprint(walked) != fmt.Sprint(all) {
		t.Errorf("walked\n%v\nwant\n%v", walked, all)
	}
	// The HTTP API pages the same way.
	auth := "Bearer " + s.token("alice", "phone", time.Hour)
	var overHTTP []wire.ConversationInfo
	path := "/conversations?limit=3"
	for range peers {
		status, _, f := s.api(t, http.MethodGet, auth, path, "")
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, status)
		}
		overHTTP = append(overHTTP, f.Conversations...)
		if !f.HasMore {
			break
		}
		last := f.Conversations[len(f.Conversations)-1]
		path = fmt.Sprintf("/conversations?limit=3&before=%d&beforeConversation=%s", last.LatestTime, url.QueryEscape(last.Conversation))
	}
	if fmt.Sprint(overHTTP) != fmt.Sprint(all) {
		t.Errorf("over HTTP\n%v\nwant\n%v", overHTTP, all)
	}
	if status, _, _ := s.api(t, http.MethodGet, auth, "/conversations?before=-5", ""); status != http.StatusBadRequest {
		t.Errorf("a negative before over HTTP: %d, want 400", status)
	}
	for _, bad := range []wire.Request{
		{Type: wire.TypeConversations, Before: -1},
		{Type: wire.TypeConversations, BeforeConversation: all[0].Conversation},
		{Type: wire.TypeConversations, Before: all[0].LatestTime, BeforeConversation: "not a conversation"},
	} {
		if _, err := alice.Do(ctx, bad); client.CodeOf(err) != wire.CodeInvalidArgument {
			t.Errorf("%+v: %v, want invalid_argument", bad, err)
		}
	}
}

// A conversation list looks at every conversation of the account, so it
// costs one read of the read budget for each 100 of them: an account
// with 250 conversations lists fewer times before it is refused than its
// burst of reads would allow one with a few.
func TestConversationListCostsByItsLength(t *testing.T) {
	const burst = 10
	s := startServer(t, func(c *node.Config) {
		c.API.ReadRate, c.API.ReadBurst = 0.01, burst
		c.Gateway.RatePerSecond, c.Gateway.RateBurst = 10000, 10000
	})
	ctx := ctxT(t)
	lists := func(c *client.Client) int {
		for n := 0; ; n++ {
			_, err := c.Conversations(ctx, 0)
			if client.CodeOf(err) == wire.CodeRateLimited {
				return n
			}
			if err != nil || n > burst {
				t.Fatalf("list %d: %v", n, err)
			}
		}
	}
	few := s.dial("bob", "phone")
	if _, err := few.Send(ctx, client.Target{Account: "carol"}, "one", "", "hi"); err != nil {
		t.Fatal(err)
	}
	if n := lists(few); n != burst {
		t.Errorf("an account with one conversation listed %d times, want %d", n, burst)
	}
	many := s.dial("alice", "phone")
	for i := range 250 {
		if _, err := many.Send(ctx, client.Target{Account: fmt.Sprint("peer", i)}, fmt.Sprint("m", i), "", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	// Each list takes one read, then two more for its 250 conversations:
	// 10 → 7 → 4 → 1 → -2.
	if n := lists(many); n != 4 {
		t.Errorf("an account with 250 conversations listed %d times, want 4", n)
	}
}
