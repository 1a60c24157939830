package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/wire"
)

// hugeBody is the largest body whose JSON is largest: 16 KiB of U+0000,
// each escaped to 6 bytes.
var hugeBody = strings.Repeat(`\u0000`, domain.MaxBodyBytes)

// A sync page is cut by bytes as well as by count, and the cursor stays
// exact: reading page after page gives every message once, in order.
func TestSyncPageBytes(t *testing.T) {
	tests := []struct {
		name      string
		pageBytes int
		messages  int
		wantPages int
	}{
		// 1 MiB holds ten ~96 KiB messages: 25 messages take three pages.
		{name: "default", messages: 25, wantPages: 3},
		// A budget below one message still sends one message a page.
		{name: "below one message", pageBytes: 1000, messages: 3, wantPages: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *httpapi.Config) { c.SyncPageBytes = tc.pageBytes })
			bob := e.user("bob", "phone")
			// Sent by a service, which no send budget slows down: alice's
			// would let ten of these through at once.
			for i := range tc.messages {
				e.send(service(), fmt.Sprintf(`{"from":{"account":"alice","device":"phone"},"to":"bob","clientMsgId":"m%d","body":"%s"}`, i, hugeBody))
			}
			budget := tc.pageBytes
			if budget == 0 {
				budget = httpapi.DefaultSyncPageBytes
			}
			var all []wire.Message
			var cur wire.Cursor
			pages := 0
			for {
				path := "/api/v1/conversations/d:alice:bob/messages?limit=200&lastMsgId=" + itoa(cur.LastMsgID)
				r := e.do(req{Method: http.MethodGet, Path: path, Auth: bob})
				var page messages
				if r.Status != http.StatusOK {
					t.Fatalf("sync: %d %.200s", r.Status, r.Body)
				}
				if err := json.Unmarshal(r.Body, &page); err != nil {
					t.Fatal(err)
				}
				pages++
				// One message over the budget is allowed, plus the envelope.
				if max := budget + 100<<10; len(r.Body) > max {
					t.Errorf("page %d: %d bytes, want at most %d", pages, len(r.Body), max)
				}
				if cl, _ := strconv.Atoi(r.Header.Get("Content-Length")); cl != len(r.Body) {
					t.Errorf("Content-Length %q for %d bytes", r.Header.Get("Content-Length"), len(r.Body))
				}
				if len(page.Messages) == 0 {
					t.Fatalf("page %d is empty with hasMore", pages)
				}
				if last := page.Messages[len(page.Messages)-1].MsgID; page.Next.LastMsgID != last {
					t.Errorf("page %d: next.lastMsgId %d, last message %d", pages, page.Next.LastMsgID, last)
				}
				all = append(all, page.Messages...)
				cur = page.Next
				if !page.HasMore {
					break
				}
				if pages > tc.messages {
					t.Fatal("more pages than messages")
				}
			}
			if pages != tc.wantPages {
				t.Errorf("%d pages, want %d", pages, tc.wantPages)
			}
			if len(all) != tc.messages {
				t.Fatalf("%d messages over all pages, want %d", len(all), tc.messages)
			}
			for i, m := range all {
				if m.ClientMsgID != fmt.Sprintf("m%d", i) || len(m.Body) != domain.MaxBodyBytes {
					t.Fatalf("message %d is %s with a %d-byte body", i, m.ClientMsgID, len(m.Body))
				}
			}
		})
	}
}
