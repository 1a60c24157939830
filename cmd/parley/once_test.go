package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// resender is one of the account's connections a resend goes out on.
type resender struct {
	name string // device and gateway
	c    *client.Client
}

// resendEverywhere sends n messages from first to bob and, 0–100 ms after
// each ack, resends its client message id from every resender, with and
// without retry, to bob and to carol. Every resend must get the original
// ack. It returns the original acks in order.
func resendEverywhere(t *testing.T, first *client.Client, others []resender, n int) []wire.ServerFrame {
	t.Helper()
	ctx := ctxT(t)
	var acks []wire.ServerFrame
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("once-%d", i)
		ack, err := first.Do(ctx, wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: id, Body: fmt.Sprint("m", i)})
		if err != nil || ack.Duplicate {
			t.Fatalf("first send of %s: %+v %v", id, ack, err)
		}
		acks = append(acks, ack)
		time.Sleep(time.Duration(i*100/max(n-1, 1)) * time.Millisecond)
		resendOne(t, others, id, ack)
	}
	return acks
}

// resendOne resends id from every resender, with and without retry, to bob
// and to carol, and checks that each gets ack.
func resendOne(t *testing.T, others []resender, id string, ack wire.ServerFrame) {
	t.Helper()
	for _, r := range others {
		for _, retry := range []bool{false, true} {
			for _, to := range []string{"bob", "carol"} {
				got, err := r.c.Do(ctxT(t), wire.Request{Type: wire.TypeSend, To: to, ClientMsgID: id, Body: "again", Retry: retry})
				if err != nil {
					t.Fatalf("resend of %s from %s, retry=%v, to %s: %v", id, r.name, retry, to, err)
				}
				if got.MsgID != ack.MsgID || got.MessageID != ack.MessageID || got.Conversation != ack.Conversation || got.ServerTime != ack.ServerTime || !got.Duplicate {
					t.Fatalf("resend of %s from %s, retry=%v, to %s: %+v, want the original %+v", id, r.name, retry, to, got, ack)
				}
			}
		}
	}
}

// assertOnce checks that the history of bob's conversation holds exactly
// the n first sends, and carol's nothing.
func assertOnce(t *testing.T, who string, c *client.Client, acks []wire.ServerFrame) {
	t.Helper()
	want := make([]string, len(acks))
	for i := range acks {
		want[i] = fmt.Sprint("m", i)
	}
	got := history(t, c, "d:alice:bob")
	assertLog(t, who+" d:alice:bob", got, want)
	for i, m := range got {
		if i < len(acks) && m.MsgID != acks[i].MsgID {
			t.Errorf("%s: message %d has msgid %d, ack said %d", who, i, m.MsgID, acks[i].MsgID)
		}
	}
	assertLog(t, who+" d:alice:carol", history(t, c, "d:alice:carol"), nil)
}

// A single node: the same client message id resent from the same and
// another device, with and without retry, to the same and another
// recipient, 0–100 ms after the ack, makes one message and gets the
// original ack every time — and again after a restart.
func TestClientMsgIDOnceEmbedded(t *testing.T) {
	s := startServer(t, nil)
	phone := s.dial("alice", "phone")
	laptop := s.dial("alice", "laptop")
	acks := resendEverywhere(t, phone, []resender{{"phone", phone}, {"laptop", laptop}}, 6)
	assertOnce(t, "alice", phone, acks)
	s.stop()
	s.start()
	// The resends pass the history's filter of client message ids, loaded
	// from the store at start, and are answered from the store: a filter
	// that missed the store's keys would let them through as new sends.
	waitFor(t, func() bool {
		_, m := httpGet(t, "http://"+s.n.Addr()+"/metrics")
		return metric(t, m, `parley_store_filter_loaded{kind="client_msg_ids",projection="parley.projection.store"}`) == 1
	})
	phone = s.dial("alice", "phone")
	for i, ack := range acks {
		got, err := phone.Do(ctxT(t), wire.Request{Type: wire.TypeSend, To: "carol", ClientMsgID: fmt.Sprintf("once-%d", i), Body: "after restart", Retry: i%2 == 0})
		if err != nil || got.MsgID != ack.MsgID || got.MessageID != ack.MessageID || !got.Duplicate {
			t.Fatalf("resend %d after restart: %+v %v, want the original %+v", i, got, err, ack)
		}
	}
	assertOnce(t, "alice after restart", phone, acks)
}

// Scale-out with the projector stopped, so that PostgreSQL and the cache
// lag by the whole test: resends on the same and the other gateway, from
// the same and other devices, with and without retry, to the same and
// another recipient, each get the original ack from the reservation in
// Redis. Once the projector runs, every store holds each message once.
func TestClientMsgIDOnceScaleOut(t *testing.T) {
	c := startCluster(t)
	gw1 := c.instance(gatewayOnly)
	gw2 := c.instance(gatewayOnly)
	proj := c.instance(projectorOnly)
	proj.stop()
	phone := gw1.dial("alice", "phone")
	tablet := gw1.dial("alice", "tablet")
	laptop := gw2.dial("alice", "laptop")
	started := time.Now()
	everyone := []resender{{"phone on gateway 1", phone}, {"tablet on gateway 1", tablet}, {"laptop on gateway 2", laptop}}
	acks := resendEverywhere(t, phone, everyone, 6)
	// Seconds later, with the projector still stopped, once more.
	time.Sleep(time.Until(started.Add(2 * time.Second)))
	for i, ack := range acks {
		resendOne(t, everyone, fmt.Sprintf("once-%d", i), ack)
	}
	// Nothing was applied while the resends ran: the lag is the test's.
	if got := c.pgHistory("d:alice:bob"); len(got) != 0 {
		t.Fatalf("PostgreSQL holds %d messages while the projector is stopped", len(got))
	}
	t.Logf("resends answered while the projector lagged %v", time.Since(started).Round(time.Millisecond))
	proj.start()
	c.waitPG("d:alice:bob", len(acks))
	time.Sleep(300 * time.Millisecond) // a second message would land by now
	if got := c.pgHistory("d:alice:bob"); len(got) != len(acks) {
		t.Fatalf("PostgreSQL holds %d messages of d:alice:bob, want %d", len(got), len(acks))
	}
	if got := c.pgHistory("d:alice:carol"); len(got) != 0 {
		t.Fatalf("PostgreSQL holds %d messages of d:alice:carol, want none", len(got))
	}
	var ids int
	if err := c.pool.QueryRow(context.Background(), "SELECT count(*) FROM client_msg_ids WHERE sender_account = 'alice'").Scan(&ids); err != nil || ids != len(acks) {
		t.Errorf("client message ids: %d %v, want %d", ids, err, len(acks))
	}
	if got := cacheMembers(t, c.rdb, c.prefix, "d:alice:bob"); len(got) != len(acks) {
		t.Errorf("the cache holds %d messages of d:alice:bob, want %d", len(got), len(acks))
	}
	if got := cacheMembers(t, c.rdb, c.prefix, "d:alice:carol"); len(got) != 0 {
		t.Errorf("the cache holds %d messages of d:alice:carol, want none", len(got))
	}
	assertOnce(t, "gateway 1", phone, acks)
	assertOnce(t, "gateway 2", laptop, acks)
}
