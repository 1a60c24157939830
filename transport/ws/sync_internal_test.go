package ws

import (
	"bytes"
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
		res, err := e.Service.Sync(ctx, api.Actor{Account: "bob"}, req.Conversation, since, 0, 50, false)
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

// A sync answered from the cache is made of the encodings the cache keeps,
// and its reply is byte for byte the one encoding its messages gives —
// whole or cut to a budget, after edits and deletions — and carries the
// messages the store answers with.
func TestSyncReplyFromCachedEncodings(t *testing.T) {
	e := apitest.New(t)
	ctx := t.Context()
	alice := domain.Sender{Account: "alice", Device: "phone"}
	var ids []domain.MsgID
	for i := range 30 {
		ack, err := e.Service.Send(ctx, api.SendRequest{From: alice, To: api.Target{Account: "bob"}, ClientMsgID: fmt.Sprintf("c-%d", i),
			Body: fmt.Sprintf("%d <\"hi\"> & \u2028 héllo %s", i, bytes.Repeat([]byte("x"), i*40))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ack.MsgID)
	}
	req := wire.Request{ID: "9", Type: wire.TypeSync, Conversation: "d:alice:bob"}
	check := func(t *testing.T) {
		t.Helper()
		for _, budget := range []int{1 << 20, 8 << 10, 100} {
			for _, after := range []domain.MsgID{0, ids[10]} {
				res, err := e.Service.Sync(ctx, api.Actor{Account: "bob"}, req.Conversation, time.Now().Add(-time.Minute), after, 50, false)
				if err != nil {
					t.Fatal(err)
				}
				if res.Source != api.SourceCache || len(res.Encoded) != len(res.Messages) || len(res.Messages) == 0 {
					t.Fatalf("%d messages and %d encodings from %s", len(res.Messages), len(res.Encoded), res.Source)
				}
				got := appendSyncReply(nil, req, res, budget)
				res.Encoded = nil
				if want := appendSyncReply(nil, req, res, budget); !bytes.Equal(got, want) {
					t.Fatalf("budget %d: reply from the cached encodings\n%s\nencoding the messages gives\n%s", budget, got, want)
				}
				store, err := e.Service.Sync(ctx, api.Actor{Account: "bob"}, req.Conversation, time.Time{}, after, 50, false)
				if err != nil {
					t.Fatal(err)
				}
				store.Source, store.NextTime = res.Source, res.NextTime
				if want := appendSyncReply(nil, req, store, budget); !bytes.Equal(got, want) {
					t.Fatalf("budget %d: reply from the cache\n%s\nfrom the store\n%s", budget, got, want)
				}
			}
		}
	}
	t.Run("sent", check)
	if _, err := e.Service.Edit(ctx, api.EditRequest{By: alice, Conversation: req.Conversation, MsgID: ids[12], ClientMsgID: "e-1", Body: "edited <now>"}); err != nil {
		t.Fatal(err)
	}
	t.Run("edited", check)
	if _, err := e.Service.Delete(ctx, alice, req.Conversation, ids[13], api.ViaSocket); err != nil {
		t.Fatal(err)
	}
	t.Run("deleted", check)
}
