package main

import (
	"fmt"
	"testing"

	"github.com/parley-chat/parley/transport/client"
)

// Each device gets the push of its own sends, chained by prevMsgId like
// every other push, so two devices that take turns in a direct
// conversation and a group hold every message from pushes alone: no gap,
// no sync.
func ownSendsNeedNoSync(t *testing.T, alice, bob *device) {
	t.Helper()
	ctx := ctxT(t)
	g, err := alice.c.CreateGroup(ctx, "turns", "bob")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]client.Target{"d:alice:bob": {Account: "bob"}, "g:" + g.Group: {Group: g.Group}}
	turns := []*device{alice, bob, alice, alice, bob, bob, alice}
	n := 0
	for conv, to := range targets {
		var want []string
		for i, d := range turns {
			if d == bob && to.Account != "" {
				to = client.Target{Account: "alice"}
			} else if d == alice && to.Account != "" {
				to = client.Target{Account: "bob"}
			}
			body := fmt.Sprintf("%s %d", conv, i)
			if _, err := d.c.Send(ctx, to, fmt.Sprintf("own-%d", n), "", body); err != nil {
				t.Fatal(err)
			}
			want = append(want, body)
			n++
		}
		assertLog(t, "alice "+conv, alice.waitInbox(t, conv, len(turns)), want)
		assertLog(t, "bob "+conv, bob.waitInbox(t, conv, len(turns)), want)
	}
	for name, d := range map[string]*device{"alice": alice, "bob": bob} {
		if d.inbox.Gaps != 0 || d.inbox.Syncs != 0 {
			t.Errorf("%s's inbox saw %d gaps and read %d sync pages, want none", name, d.inbox.Gaps, d.inbox.Syncs)
		}
	}
}

func TestOwnSendsNeedNoSyncEmbedded(t *testing.T) {
	s := startServer(t, nil)
	ownSendsNeedNoSync(t, s.device("alice", "phone"), s.device("bob", "phone"))
}

func TestOwnSendsNeedNoSyncScaleOut(t *testing.T) {
	c := startCluster(t)
	gw1 := c.instance(gatewayOnly)
	gw2 := c.instance(gatewayOnly)
	c.instance(projectorOnly)
	ownSendsNeedNoSync(t, gw1.device("alice", "phone"), gw2.device("bob", "phone"))
}
