package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/projections/retention"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

// pinnedClock is the retention job's clock in these tests: the real time
// until a test pins it.
type pinnedClock struct{ at atomic.Pointer[time.Time] }

func (c *pinnedClock) Now() time.Time {
	if at := c.at.Load(); at != nil {
		return *at
	}
	return time.Now()
}

// retentionKeep is the tests' retention; the clock makes messages old.
const retentionKeep = time.Hour

func withRetention(clk *pinnedClock) func(*node.Config) {
	return func(cfg *node.Config) {
		cfg.Retention = retention.Config{Keep: retentionKeep, Interval: 20 * time.Millisecond, Batch: 2, Now: clk.Now}
	}
}

// oldAndNew sends old messages (1:1 and to a group), then new ones once
// the clock has moved past the last old one, and pins the job's clock so
// that exactly the old ones are older than the retention. It returns the
// acks of each.
func oldAndNew(t *testing.T, alice *client.Client, clk *pinnedClock) (group string, old, young []wire.ServerFrame) {
	t.Helper()
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, "retention", "bob")
	if err != nil {
		t.Fatal(err)
	}
	send := func(to client.Target, id, body string) wire.ServerFrame {
		ack, err := alice.Send(ctx, to, id, "", body)
		if err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
		return ack
	}
	for i := range 3 {
		old = append(old, send(client.Target{Account: "bob"}, fmt.Sprint("old", i), fmt.Sprint("old ", i)))
	}
	old = append(old, send(client.Target{Group: g.Group}, "gold", "old to the group"))
	var last int64
	for _, a := range old {
		last = max(last, a.ServerTime)
	}
	cutoff := time.UnixMilli(last + 1) // every old message was sent before it
	for !time.Now().After(cutoff.Add(time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	for i := range 2 {
		young = append(young, send(client.Target{Account: "bob"}, fmt.Sprint("new", i), fmt.Sprint("new ", i)))
	}
	young = append(young, send(client.Target{Group: g.Group}, "gnew", "new to the group"))
	at := cutoff.Add(retentionKeep)
	clk.at.Store(&at)
	return g.Group, old, young
}

// syncFrom is one sync page of conv after lastMsgID; lastTime 0 asks the
// store.
func syncFrom(t *testing.T, c *client.Client, conv string, lastTime, lastMsgID int64) wire.ServerFrame {
	t.Helper()
	f, err := c.Sync(ctxT(t), conv, wire.Cursor{LastTime: lastTime, LastMsgID: lastMsgID}, 100)
	if err != nil {
		t.Fatalf("sync %s after %d: %v", conv, lastMsgID, err)
	}
	return f
}

// checkGone checks what sync says of a conversation after the retention:
// from any cursor below the floor, exactly the range gone and the young
// messages; from the floor on, the young messages and nothing gone.
func checkGone(t *testing.T, c *client.Client, conv string, old, young []wire.ServerFrame) {
	t.Helper()
	floor := old[len(old)-1].MsgID
	want := make([]string, len(young))
	for i, a := range young {
		want[i] = fmt.Sprint(a.MsgID)
	}
	ids := func(ms []wire.Message) string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = fmt.Sprint(m.MsgID)
		}
		return strings.Join(out, ",")
	}
	recent := time.Now().Add(-time.Minute).UnixMilli() // within the cache window
	type cursorCase struct {
		name      string
		lastTime  int64
		lastMsgID int64
		gone      int64
	}
	cases := []cursorCase{
		{"from the start, the store", 0, 0, floor},
		{"from just below the first old message, the store", 0, old[0].MsgID - 1, floor},
		{"from just below the first old message, a recent cursor", recent, old[0].MsgID - 1, floor},
		{"from the floor, the store", 0, floor, 0},
		{"from the floor, a recent cursor", recent, floor, 0},
	}
	if len(old) > 1 {
		cases = append(cases, cursorCase{"from inside the gone range", recent, old[len(old)-2].MsgID, floor})
	}
	for _, tc := range cases {
		f := syncFrom(t, c, conv, tc.lastTime, tc.lastMsgID)
		if f.GoneThrough != tc.gone || ids(f.Messages) != strings.Join(want, ",") || f.HasMore {
			t.Errorf("%s %s: goneThrough %d, messages [%s] (more %v) from %s; want goneThrough %d, messages [%s]",
				conv, tc.name, f.GoneThrough, ids(f.Messages), f.HasMore, f.Source, tc.gone, strings.Join(want, ","))
		}
		if f.Next == nil || f.Next.LastMsgID != young[len(young)-1].MsgID {
			t.Errorf("%s %s: next cursor %+v, want msgid %d", conv, tc.name, f.Next, young[len(young)-1].MsgID)
		}
	}
}

// waitGone waits until a sync from the start says the old messages are gone.
func waitGone(t *testing.T, c *client.Client, conv string, old []wire.ServerFrame) {
	t.Helper()
	floor := old[len(old)-1].MsgID
	waitFor(t, func() bool { return syncFrom(t, c, conv, 0, 0).GoneThrough == floor })
}

// With a retention, old messages leave the history and the cache; sync
// says exactly which range is gone, over the socket and over HTTP; new
// messages are untouched; a restart (which applies the log's tail again)
// brings nothing back; the metrics count it.
func TestRetentionRemovesOldHistory(t *testing.T) {
	clk := &pinnedClock{}
	const cred = "service-credential-for-tests"
	s := startServer(t, func(cfg *node.Config) { withRetention(clk)(cfg); cfg.ServiceCredential = cred })
	alice := s.dial("alice", "phone")
	bob := s.dial("bob", "phone")
	group, old, young := oldAndNew(t, alice, clk)
	direct := old[0].Conversation
	gconv := "g:" + group
	waitGone(t, bob, direct, old[:3])
	waitGone(t, bob, gconv, old[3:])
	checkGone(t, bob, direct, old[:3], young[:2])
	checkGone(t, bob, gconv, old[3:], young[2:])

	// HTTP sync says the same.
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.n.Addr()+"/api/v1/conversations/"+direct+"/messages?lastMsgId=0", nil)
	req.Header.Set("Authorization", "Bearer "+s.token("bob", "web", time.Hour))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		GoneThrough int64          `json:"goneThrough"`
		Messages    []wire.Message `json:"messages"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || page.GoneThrough != old[2].MsgID || len(page.Messages) != 2 || page.Messages[0].MsgID != young[0].MsgID {
		t.Errorf("HTTP sync: %v, goneThrough %d, %d messages; want goneThrough %d and the 2 new", err, page.GoneThrough, len(page.Messages), old[2].MsgID)
	}

	_, body := httpGet(t, "http://"+s.n.Addr()+"/metrics")
	if n := metric(t, body, `parley_retention_removed_messages_total{read_model="store"}`); n != 4 {
		t.Errorf("parley_retention_removed_messages_total{read_model=\"store\"} = %v, want 4", n)
	}
	if n := metric(t, body, `parley_retention_removed_messages_total{read_model="cache"}`); n != 4 {
		t.Errorf("parley_retention_removed_messages_total{read_model=\"cache\"} = %v, want 4", n)
	}
	if metric(t, body, "parley_retention_last_success_timestamp_seconds") == 0 {
		t.Error("parley_retention_last_success_timestamp_seconds is 0")
	}

	// A message sent now is kept, and follows the new ones.
	later, err := alice.Send(ctxT(t), client.Target{Account: "bob"}, "later", "", "later")
	if err != nil {
		t.Fatal(err)
	}
	checkGone(t, bob, direct, old[:3], append(young[:2:2], later))

	s.restart()
	bob = s.dial("bob", "phone")
	checkGone(t, bob, direct, old[:3], append(young[:2:2], later))
	checkGone(t, bob, gconv, old[3:], young[2:])

	// The Go client's inbox moves past the gone range and says so.
	tablet := newDevice(s.dial("bob", "tablet"))
	if err := tablet.inbox.Sync(ctxT(t), direct); err != nil {
		t.Fatal(err)
	}
	if got := bodies(tablet.inbox.Messages(direct)); fmt.Sprint(got) != "[new 0 new 1 later]" || tablet.inbox.GoneThrough(direct) != old[2].MsgID {
		t.Errorf("the inbox holds %v and says gone through %d; want the 3 kept and %d", got, tablet.inbox.GoneThrough(direct), old[2].MsgID)
	}
}

// Scale-out: the projector's job removes the old messages from PostgreSQL
// and Redis; a gateway's sync says so; `parley replay` into the same
// schema (which keeps the floors) and into an empty one (with --retention)
// brings none of them back.
func TestClusterRetention(t *testing.T) {
	c := startCluster(t)
	clk := &pinnedClock{}
	gw := c.instance(gatewayOnly)
	c.instance(projectorOnly, withRetention(clk))
	alice, bob := gw.dial("alice", "phone"), gw.dial("bob", "phone")
	group, old, young := oldAndNew(t, alice, clk)
	direct, gconv := old[0].Conversation, "g:"+group
	waitGone(t, bob, direct, old[:3])
	waitGone(t, bob, gconv, old[3:])
	checkGone(t, bob, direct, old[:3], young[:2])
	checkGone(t, bob, gconv, old[3:], young[2:])
	noOld := func(where string, h []wire.Message, cache []string) {
		t.Helper()
		if strings.Contains(fmt.Sprint(bodies(h)), "old") {
			t.Errorf("%s: the history holds old messages: %v", where, bodies(h))
		}
		if strings.Contains(strings.Join(cache, "\n"), `"b":"old`) {
			t.Errorf("%s: the cache holds old messages: %v", where, cache)
		}
	}
	waitFor(t, func() bool { return len(c.pgHistory(direct)) == 2 })
	noOld("PostgreSQL", c.pgHistory(direct), cacheMembers(t, c.rdb, c.prefix, direct))
	if got := bodies(c.pgHistory(direct)); fmt.Sprint(got) != "[new 0 new 1]" {
		t.Errorf("PostgreSQL holds %v, want the 2 new", got)
	}

	replay := func(pg postgres.Config, prefix string, extra ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args := append([]string{"replay", "--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4",
			"--projection", "all", "--postgres-dsn", pg.DSN, "--postgres-schema", pg.Schema, "--key-schema", c.pg.Schema,
			"--redis-addr", redistest.Addr(), "--redis-prefix", prefix}, extra...)
		if err := run(args, &out, &errOut); err != nil {
			t.Fatalf("replay: %v\n%s", err, errOut.String())
		}
		return errOut.String()
	}
	// The same schema: the floors make the store skip the old records.
	replay(c.pg, c.prefix)
	noOld("replayed into the same schema", c.pgHistory(direct), cacheMembers(t, c.rdb, c.prefix, direct))
	checkGone(t, bob, direct, old[:3], young[:2])
	checkGone(t, bob, gconv, old[3:], young[2:])

	// An empty schema has no floors: the replay removes, before it ends,
	// what the retention removes. Its clock is the real one, so the
	// retention is shorter than the test: every message is old, and
	// none may remain.
	emptyPG, emptyPrefix, pool := emptySchema(t)
	if h := (&testCluster{t: t, pool: pool}).pgHistory(direct); len(h) != 0 {
		t.Fatalf("the empty schema holds %d messages", len(h))
	}
	replay(emptyPG, emptyPrefix)
	if h := (&testCluster{t: t, pool: pool}).pgHistory(direct); len(h) != 5 {
		t.Fatalf("a replay without --retention holds %d messages, want all 5: the log still has them", len(h))
	}

	otherPG, otherPrefix, otherPool := emptySchema(t)
	rebuilt := &testCluster{t: t, pool: otherPool}
	cfg, err := parseReplay([]string{"--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4",
		"--projection", "all", "--postgres-dsn", otherPG.DSN, "--postgres-schema", otherPG.Schema, "--key-schema", c.pg.Schema,
		"--redis-addr", redistest.Addr(), "--redis-prefix", otherPrefix, "--retention", retentionKeep.String()}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	cfg.progressOut, cfg.now = &report, clk.Now
	if _, _, err := runReplay(ctxT(t), cfg); err != nil {
		t.Fatalf("replay with --retention: %v\n%s", err, report.String())
	}
	noOld("replayed into an empty schema", rebuilt.pgHistory(direct), cacheMembers(t, c.rdb, otherPrefix, direct))
	if got := bodies(rebuilt.pgHistory(direct)); fmt.Sprint(got) != "[new 0 new 1]" {
		t.Errorf("the rebuilt history holds %v, want the 2 new (%s)", got, report.String())
	}
	if !strings.Contains(report.String(), "removed 4 messages") {
		t.Errorf("the replay's report does not say it removed 4 messages:\n%s", report.String())
	}
	var gone int64
	if err := otherPool.QueryRow(context.Background(), `SELECT gone_through FROM history_floors WHERE conversation = $1`, direct).Scan(&gone); err != nil || gone != old[2].MsgID {
		t.Errorf("the rebuilt floor of %s = %d (%v), want %d", direct, gone, err, old[2].MsgID)
	}
}

// emptySchema is a new PostgreSQL schema and Redis prefix, with a pool on
// the schema.
func emptySchema(t *testing.T) (postgres.Config, string, *pgxpool.Pool) {
	t.Helper()
	pg := postgrestest.Config(t)
	_, prefix := redistest.Client(t)
	pool, err := postgres.Open(context.Background(), pg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pg, prefix, pool
}
