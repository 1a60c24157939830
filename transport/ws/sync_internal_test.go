package ws

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/api/apitest"
	"github.com/parley-chat/parley/transport/wire"
)

// BenchmarkSyncReply answers a sync of a page of 50 messages from the
// 7-day cache and encodes its reply, as a client's pull-sync with a recent
// lastTime is answered (the generator's sync scenario, --body-bytes 64).
func BenchmarkSyncReply(b *testing.B) {
	e := apitest.New(b)
	ctx := context.Background()
	alice := domain.Sender{Account: "alice", Device: "phone"}
	for i := range 60 {
		body := fmt.Sprintf("%04d the quick brown fox jumps over the lazy dog, twice & <again>", i)
		if _, err := e.Service.Send(ctx, api.SendRequest{From: alice, To: api.Target{Account: "bob"}, ClientMsgID: fmt.Sprintf("c-%d", i), Body: body}); err != nil {
			b.Fatal(err)
		}
	}
	req := wire.Request{ID: "42", Type: wire.TypeSync, Conversation: "d:alice:bob"}
	since := time.Now().Add(-time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Service.Sync(ctx, "bob", req.Conversation, since, 0, 50, false)
		if err != nil {
			b.Fatal(err)
		}
		if res.Source != api.SourceCache || len(res.Messages) != 50 {
			b.Fatalf("%d messages from %s", len(res.Messages), res.Source)
		}
		if reply := appendSyncReply(nil, req, res, 1<<20); len(reply) < 50*64 {
			b.Fatalf("reply of %d bytes", len(reply))
		}
	}
}
