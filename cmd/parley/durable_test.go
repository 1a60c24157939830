package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// history of a world before its log is replaced: groups with members
// added and removed, direct and group messages.
type before struct {
	group   string
	grouped []string // bodies of the group's messages
	direct  []string // bodies of d:alice:bob
	latest  map[string]int64
}

// chatBeforeANewLog makes the history on dial (alice owns the group; bob
// and carol joined, carol left; dave was never in it).
func chatBeforeANewLog(t *testing.T, dial func(account, device string) *client.Client) before {
	ctx := ctxT(t)
	alice, bob := dial("alice", "phone"), dial("bob", "phone")
	g, err := alice.CreateGroup(ctx, "team", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMembers(ctx, g.Group, "carol"); err != nil {
		t.Fatal(err)
	}
	b := before{group: g.Group, latest: map[string]int64{}}
	for i := 0; i < 5; i++ {
		body := fmt.Sprint("group-", i)
		ack, err := bob.Send(ctx, client.Target{Group: g.Group}, fmt.Sprint("g", i), "", body)
		if err != nil {
			t.Fatal(err)
		}
		b.grouped = append(b.grouped, body)
		b.latest["g:"+g.Group] = ack.MsgID
		body = fmt.Sprint("direct-", i)
		if ack, err = alice.Send(ctx, client.Target{Account: "bob"}, fmt.Sprint("d", i), "", body); err != nil {
			t.Fatal(err)
		}
		b.direct = append(b.direct, body)
		b.latest["d:alice:bob"] = ack.MsgID
	}
	carol := dial("carol", "phone")
	if _, err := carol.Do(ctx, wire.Request{Type: wire.TypeGroupRemove, Group: g.Group, Accounts: []string{"carol"}}); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkAfterANewLog checks, on a log that starts empty in a new epoch,
// that the world of b is whole: members send to and sync the group,
// non-members are refused, every conversation lists with its latest
// msgid, old messages sync, and new msgids are above every old one.
func checkAfterANewLog(t *testing.T, b before, dial func(account, device string) *client.Client) {
	ctx := ctxT(t)
	bob, alice := dial("bob", "laptop"), dial("alice", "laptop")
	conv := "g:" + b.group
	assertLog(t, "the group's history", history(t, bob, conv), b.grouped)
	assertLog(t, "the direct history", history(t, alice, "d:alice:bob"), b.direct)
	f, err := bob.Do(ctx, wire.Request{Type: wire.TypeConversations})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]int64{}
	for _, c := range f.Conversations {
		listed[c.Conversation] = c.LatestMsgID
	}
	for c, id := range b.latest {
		if listed[c] != id {
			t.Errorf("bob's conversation list has %s at %d, want %d (list %v)", c, listed[c], id, listed)
		}
	}
	ack, err := bob.Send(ctx, client.Target{Group: b.group}, "new-1", "", "on the new log")
	if err != nil {
		t.Fatalf("a member cannot send to the group on the new log: %v", err)
	}
	if ack.MsgID <= b.latest[conv] {
		t.Errorf("msgid on the new log %d is not above the old %d", ack.MsgID, b.latest[conv])
	}
	assertLog(t, "the group with the new message", history(t, alice, conv), append(b.grouped, "on the new log"))
	for _, who := range []string{"carol", "dave"} {
		c := dial(who, "phone")
		_, err := c.Send(ctx, client.Target{Group: b.group}, "x", "", "intruder")
		if client.CodeOf(err) != wire.CodeNotMember {
			t.Errorf("%s, not a member, sends to the group: %v", who, err)
		}
		if _, err := c.Sync(ctx, conv, wire.Cursor{}, 10); client.CodeOf(err) != wire.CodeNotMember {
			t.Errorf("%s, not a member, syncs the group: %v", who, err)
		}
	}
	// A retry of a message of the old log still finds it.
	dup, err := alice.Send(ctx, client.Target{Account: "bob"}, "d2", "", "direct-2")
	if err != nil || !dup.Duplicate {
		t.Errorf("a retry of an old message: %+v %v", dup, err)
	}
}

// A single node whose log is lost (or replaced: a new epoch) keeps every
// read model: they live in its store, not in the log.
func TestEmbeddedReadModelsOutliveTheLog(t *testing.T) {
	s := startServer(t, nil)
	b := chatBeforeANewLog(t, func(a, d string) *client.Client { return s.dial(a, d) })
	s.stop()
	if err := os.RemoveAll(filepath.Join(s.dir, "log")); err != nil {
		t.Fatal(err)
	}
	s.mod = func(c *node.Config) { c.Kafka.Epoch = 2 }
	s.start()
	checkAfterANewLog(t, b, func(a, d string) *client.Client { return s.dial(a, d) })
}

// A cluster moved to a new, empty broker in the next epoch, against the
// same PostgreSQL and Redis, keeps groups, memberships, the conversation
// list and the history.
func TestClusterReadModelsOutliveTheLog(t *testing.T) {
	c := startCluster(t)
	gw := c.instance(gatewayOnly)
	pr := c.instance(projectorOnly)
	b := chatBeforeANewLog(t, func(a, d string) *client.Client { return gw.dial(a, d) })
	c.waitPG("g:"+b.group, len(b.grouped))
	c.waitPG("d:alice:bob", len(b.direct))
	gw.stop()
	pr.stop()

	nb, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nb.Close)
	c.brokers = nb.Addrs()
	epoch2 := func(cfg *node.Config) { cfg.Kafka.Epoch = 2 }
	gw2, _ := c.instance(gatewayOnly, epoch2), c.instance(projectorOnly, epoch2)
	checkAfterANewLog(t, b, func(a, d string) *client.Client { return gw2.dial(a, d) })
}

// A single node whose log keeps records only briefly keeps every read
// model across a restart: the store holds what the trimmed log no longer
// does.
func TestEmbeddedReadModelsOutliveRetention(t *testing.T) {
	short := func(c *node.Config) {
		c.Kafka.Retention = time.Second
		c.EmbeddedBroker.RetentionCheck = 100 * time.Millisecond
	}
	s := startServer(t, short)
	b := chatBeforeANewLog(t, func(a, d string) *client.Client { return s.dial(a, d) })
	// Wait until the log dropped the history, then one more message so the
	// log's end moves on.
	waitFor(t, func() bool {
		l, err := kafka.Open(kafka.Config{Brokers: s.n.BrokerAddrs(), Partitions: 4, Logger: testLogger()})
		if err != nil {
			return false
		}
		defer l.Close()
		start, err := l.StartOffsets()
		if err != nil {
			return false
		}
		var trimmed int64
		for _, o := range start {
			trimmed += o
		}
		return trimmed > 0
	})
	s.restart()
	checkAfterANewLog(t, b, func(a, d string) *client.Client { return s.dial(a, d) })
}

// A clean stop lets the single node's read models apply the whole log:
// messages acked a moment before the stop are in the store even if the
// log is lost before the next start.
func TestCleanStopAppliesTheWholeLog(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	alice := s.dial("alice", "phone")
	var bodies []string
	for i := range 100 {
		body := fmt.Sprint("m-", i)
		if _, err := alice.Send(ctx, client.Target{Account: fmt.Sprint("peer", i%7)}, fmt.Sprint("c", i), "", body); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	s.stop() // at once, after the last ack
	if err := os.RemoveAll(filepath.Join(s.dir, "log")); err != nil {
		t.Fatal(err)
	}
	s.mod = func(c *node.Config) { c.Kafka.Epoch = 2 }
	s.start()
	alice = s.dial("alice", "laptop")
	got := 0
	for p := range 7 {
		got += len(history(t, alice, fmt.Sprintf("d:alice:peer%d", p)))
	}
	if got != len(bodies) {
		t.Errorf("the store holds %d of the %d messages acked before a clean stop", got, len(bodies))
	}
}
