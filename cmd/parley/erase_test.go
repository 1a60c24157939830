package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/jackc/pgx/v5/pgxpool"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
)

const eraseCredential = "erase-test-service-credential"

// eraseCorpus is what the erasure tests send: alice's bodies, to be
// erased, all carry "SECRET-A"; bob's and carol's must survive intact.
type eraseCorpus struct {
	direct, group string
}

func sendEraseCorpus(t *testing.T, alice, bob, carol *client.Client) eraseCorpus {
	t.Helper()
	ctx := ctxT(t)
	a1, err := alice.Send(ctx, client.Target{Account: "bob"}, "a1", "", "SECRET-A one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, client.Target{Account: "alice"}, "b1", "", "bob keeps this"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, client.Target{Account: "bob"}, "a2", "", "SECRET-A two"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Edit(ctx, a1.Conversation, a1.MsgID, "a1e", "SECRET-A one, edited"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Read(ctx, a1.Conversation, a1.MsgID); err != nil {
		t.Fatal(err)
	}
	// bob owns the group: an owner is always a member (domain.Group), so
	// an erased owner stays named as the group's owner (docs/operations.md).
	g, err := bob.CreateGroup(ctx, "erasure", "alice", "carol")
	if err != nil {
		t.Fatal(err)
	}
	gm, err := alice.Send(ctx, client.Target{Group: g.Group}, "g1", "", "SECRET-A to the group")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Send(ctx, client.Target{Group: g.Group}, "c1", "", "carol keeps this"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Read(ctx, gm.Conversation, gm.MsgID); err != nil {
		t.Fatal(err)
	}
	return eraseCorpus{direct: a1.Conversation, group: gm.Conversation}
}

// checkErased checks a conversation after alice's erasure: her messages
// are tombstones at the same msgids, everyone else's are as before.
func checkErased(t *testing.T, who string, got, before []wire.Message) {
	t.Helper()
	if len(got) != len(before) {
		t.Fatalf("%s: %d messages, want %d: %+v", who, len(got), len(before), got)
	}
	for i, m := range got {
		b := before[i]
		if m.MsgID != b.MsgID || m.MessageID != b.MessageID || m.From != b.From || m.ServerTime != b.ServerTime {
			t.Errorf("%s: message %d is %+v, was %+v", who, i, m, b)
		}
		if b.From == "alice" {
			if !m.Deleted || m.Body != "" || m.EditedAt != 0 {
				t.Errorf("%s: alice's message %d = %+v, want a tombstone", who, m.MsgID, m)
			}
			continue
		}
		if m != b {
			t.Errorf("%s: %s's message changed: %+v, was %+v", who, b.From, m, b)
		}
	}
}

// checkErasedChanges syncs conv with changes from the last msgid of
// before, as a device offline during the erasure: the changes are alice's
// messages, as tombstones, and no one else's.
func checkErasedChanges(t *testing.T, who string, c *client.Client, conv string, before []wire.Message) {
	t.Helper()
	f, err := c.SyncChanges(ctxT(t), conv, wire.Cursor{LastMsgID: before[len(before)-1].MsgID}, 200)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, m := range before {
		if m.From == "alice" {
			want = append(want, m.MsgID)
		}
	}
	var got []int64
	for _, m := range f.Changes {
		got = append(got, m.MsgID)
		if !m.Deleted || m.Body != "" || m.From != "alice" {
			t.Errorf("%s: change %+v, want alice's tombstone", who, m)
		}
	}
	// One erasure changes them all at its revision: in msgid order.
	if fmt.Sprint(got) != fmt.Sprint(want) || f.ChangesMore {
		t.Errorf("%s: changes %v (more %v), want alice's messages %v", who, got, f.ChangesMore, want)
	}
}

// syncBoth reads conv from the store (from the start) and from the 7-day
// cache (a recent lastTime).
func syncBoth(t *testing.T, c *client.Client, conv string) (fromStore, fromCache []wire.Message) {
	t.Helper()
	f, err := c.Sync(ctxT(t), conv, wire.Cursor{LastTime: time.Now().Add(-time.Hour).UnixMilli()}, 200)
	if err != nil {
		t.Fatal(err)
	}
	return history(t, c, conv), f.Messages
}

// eraseHTTP posts an erasure with the given Authorization.
func eraseHTTP(t *testing.T, s *server, account, auth string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://"+s.n.Addr()+"/api/v1/accounts/"+account+"/erase", nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("erase answered %d %q: %v", resp.StatusCode, body, err)
	}
	return resp.StatusCode, out
}

// alice2Readers asks, as a fresh device of alice's, who read msgid of
// conv: a check that bob's cursor survives alice's erasure.
func alice2Readers(t *testing.T, s *server, conv string, msgid int64) (wire.ServerFrame, error) {
	t.Helper()
	return s.dial("alice", "laptop").Readers(ctxT(t), conv, msgid)
}

// filesContaining lists the files under dir whose bytes contain s.
func filesContaining(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// On a single node, `parley erase` leaves alice's messages as tombstones
// in the history and the cache, everyone else's untouched; the tap and the
// log's files never hold her bodies; her read cursors and memberships are
// gone; erasing again changes nothing; a restart keeps it; and bad input
// is answered.
func TestEraseAccount(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = eraseCredential })
	alice, bob, carol := s.dial("alice", "phone"), s.dial("bob", "phone"), s.dial("carol", "phone")
	corpus := sendEraseCorpus(t, alice, bob, carol)
	beforeDirect, _ := syncBoth(t, bob, corpus.direct)
	beforeGroup, _ := syncBoth(t, carol, corpus.group)
	if r, err := carol.Readers(ctxT(t), corpus.group, beforeGroup[0].MsgID); err != nil || !strings.Contains(fmt.Sprint(r.Accounts), "alice") {
		t.Fatalf("before the erasure, the group's readers are %+v, %v; want alice", r, err)
	}
	if !strings.Contains(fmt.Sprint(beforeDirect), "SECRET-A one, edited") {
		t.Fatalf("before the erasure bob reads %+v", beforeDirect)
	}
	// Which conversations alice muted is hers, and goes; bob's mute of
	// the same conversation stays.
	for _, c := range []*client.Client{alice, bob} {
		if _, err := c.Mute(ctxT(t), corpus.direct, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The log never held a body in plaintext: every body is sealed.
	if hits := filesContaining(t, filepath.Join(s.dir, "log"), "SECRET-A"); len(hits) > 0 {
		t.Errorf("the log's files hold alice's plaintext: %v", hits)
	}

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			name, account, auth string
			status              int
			code                string
		}{
			{"no credential", "alice", "", http.StatusUnauthorized, "unauthorized"},
			{"wrong credential", "alice", "Bearer svc:not-the-credential-at-all", http.StatusUnauthorized, "unauthorized"},
			{"a user's token", "alice", "Bearer " + s.token("alice", "phone", time.Hour), http.StatusForbidden, "forbidden"},
			{"unknown account", "nobody", "Bearer svc:" + eraseCredential, http.StatusNotFound, "not_found"},
			{"invalid account", "a%20b", "Bearer svc:" + eraseCredential, http.StatusBadRequest, "invalid_argument"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, body := eraseHTTP(t, s, tc.account, tc.auth)
				if status != tc.status || body["code"] != tc.code {
					t.Errorf("erase = %d %v, want %d %s", status, body, tc.status, tc.code)
				}
			})
		}
		var out bytes.Buffer
		err := run([]string{"erase", "--account", "alice", "--url", "http://" + s.n.Addr()}, &out, &out)
		if err == nil || !strings.Contains(err.Error(), "--service-credential") {
			t.Errorf("erase without a credential: %v", err)
		}
	})
	if h, _ := syncBoth(t, bob, corpus.direct); fmt.Sprint(h) != fmt.Sprint(beforeDirect) {
		t.Fatalf("refused erasures changed the history: %+v", h)
	}

	for round := range 2 {
		var out bytes.Buffer
		err := run([]string{"erase", "--account", "alice", "--url", "http://" + s.n.Addr(),
			"--service-credential", eraseCredential}, &out, &out)
		if err != nil {
			t.Fatalf("erase, round %d: %v\n%s", round, err, out.String())
		}
		want := "1 data keys destroyed"
		if round == 1 {
			want = "0 data keys destroyed"
		}
		if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "have applied it") {
			t.Errorf("erase, round %d, printed %q, want %q", round, out.String(), want)
		}
		for _, c := range []struct {
			who  string
			cl   *client.Client
			conv string
			was  []wire.Message
		}{{"bob, direct", bob, corpus.direct, beforeDirect}, {"carol, group", carol, corpus.group, beforeGroup}} {
			store, cache := syncBoth(t, c.cl, c.conv)
			checkErased(t, fmt.Sprintf("%s, store, round %d", c.who, round), store, c.was)
			checkErased(t, fmt.Sprintf("%s, cache, round %d", c.who, round), cache, c.was)
			checkErasedChanges(t, fmt.Sprintf("%s, changes, round %d", c.who, round), c.cl, c.conv, c.was)
		}
	}

	// Alice's cursors and memberships are gone; bob's are not.
	if gs, err := carol.Groups(ctxT(t)); err != nil || len(gs) != 1 || strings.Contains(fmt.Sprint(gs[0].Members), "alice") {
		t.Errorf("carol's groups after the erasure = %+v, %v; want alice gone", gs, err)
	}
	if r, err := alice2Readers(t, s, corpus.direct, beforeDirect[0].MsgID); err != nil || !strings.Contains(fmt.Sprint(r.Accounts), "bob") {
		t.Errorf("bob's cursor after alice's erasure: %+v, %v", r, err)
	}
	if r, err := carol.Readers(ctxT(t), corpus.group, beforeGroup[0].MsgID); err != nil || strings.Contains(fmt.Sprint(r.Accounts), "alice") {
		t.Errorf("alice's cursor after her erasure: %+v, %v", r, err)
	}

	// The tap prints no body of alice's: sealed, and the key is gone.
	lines := tapRun(t, s, "--from", "earliest")
	var erased int
	for _, l := range lines {
		if bytes.Contains(l.Payload, []byte("SECRET-A")) {
			t.Errorf("the tap prints alice's body: %s", l.Payload)
		}
		if l.Event == "AccountErased.v1" {
			erased++
		}
	}
	if erased != 2*4 {
		t.Errorf("the tap shows %d AccountErased.v1 records, want one per partition per erasure, 8", erased)
	}

	// A restart rebuilds the in-memory cache from the log's tail: still erased.
	s.restart()
	bob, carol = s.dial("bob", "phone"), s.dial("carol", "phone")
	store, _ := syncBoth(t, bob, corpus.direct)
	checkErased(t, "bob after a restart", store, beforeDirect)
	store, _ = syncBoth(t, carol, corpus.group)
	checkErased(t, "carol after a restart", store, beforeGroup)
	checkErasedChanges(t, "carol's changes after a restart", carol, corpus.group, beforeGroup)

	// Alice may use Parley again: a new key, readable.
	alice = s.dial("alice", "phone")
	if _, err := alice.Send(ctxT(t), client.Target{Account: "bob"}, "a3", "", "after the erasure"); err != nil {
		t.Fatal(err)
	}
	after := history(t, bob, corpus.direct)
	if last := after[len(after)-1]; last.Body != "after the erasure" || last.Deleted {
		t.Errorf("alice's message after her erasure = %+v", last)
	}
	for _, c := range []struct {
		who   string
		cl    *client.Client
		muted bool
	}{{"alice", alice, false}, {"bob", bob, true}} {
		list, err := c.cl.Conversations(ctxT(t), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range list {
			if l.Conversation == corpus.direct && l.Muted != c.muted {
				t.Errorf("%s's mute of %s after alice's erasure: %v, want %v", c.who, l.Conversation, l.Muted, c.muted)
			}
		}
	}
}

// An erased owner stays its group's owner and member (operations.md): the
// erasure appends no removal for the groups it owns, and every list of
// groups, its own included, still shows it there.
func TestEraseAnOwnerKeepsItsGroups(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = eraseCredential })
	dan, erin := s.dial("dan", "phone"), s.dial("erin", "phone")
	g, err := dan.CreateGroup(ctxT(t), "dan's", "erin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dan.Send(ctxT(t), client.Target{Group: g.Group}, "d1", "", "before"); err != nil {
		t.Fatal(err)
	}
	if status, body := eraseHTTP(t, s, "dan", "Bearer svc:"+eraseCredential); status != http.StatusOK {
		t.Fatalf("erase = %d %v", status, body)
	}
	for name, c := range map[string]*client.Client{"dan": dan, "erin": erin} {
		gs, err := c.Groups(ctxT(t))
		if err != nil || len(gs) != 1 || gs[0].Owner != "dan" || fmt.Sprint(gs[0].Members) != "[dan erin]" {
			t.Errorf("%s's groups after dan's erasure: %+v, %v; want dan's group with dan in it", name, gs, err)
		}
	}
	for _, l := range tapRun(t, s, "--from", "earliest", "--types", "GroupMembersRemoved.v1") {
		t.Errorf("the erasure removed the owner: %s", l.Payload)
	}
}

// In a cluster (PostgreSQL, Redis), an erasure through one gateway is
// applied by the projector; a replay into an empty schema keeps alice's
// bodies absent and everyone else's present.
func TestClusterEraseAndReplay(t *testing.T) {
	c := startCluster(t)
	gw1 := c.instance(gatewayOnly, func(cfg *node.Config) { cfg.ServiceCredential = eraseCredential })
	gw2 := c.instance(gatewayOnly)
	c.instance(projectorOnly)
	alice, bob, carol := gw1.dial("alice", "phone"), gw2.dial("bob", "phone"), gw2.dial("carol", "phone")
	corpus := sendEraseCorpus(t, alice, bob, carol)
	beforeDirect := history(t, bob, corpus.direct)
	waitFor(t, func() bool { return len(c.pgHistory(corpus.direct)) == len(beforeDirect) })

	status, body := eraseHTTP(t, gw1, "alice", "Bearer svc:"+eraseCredential)
	if status != http.StatusOK || body["applied"] != true || body["records"] != float64(4) {
		t.Fatalf("erase = %d %v", status, body)
	}
	store, cache := syncBoth(t, bob, corpus.direct)
	checkErased(t, "store through the other gateway", store, beforeDirect)
	checkErased(t, "cache through the other gateway", cache, beforeDirect)
	checkErased(t, "PostgreSQL", c.pgHistory(corpus.direct), beforeDirect)
	checkErasedChanges(t, "changes through the other gateway", bob, corpus.direct, beforeDirect)
	if members := strings.Join(cacheMembers(t, c.rdb, c.prefix, corpus.direct), "\n"); strings.Contains(members, "SECRET-A") {
		t.Errorf("Redis holds alice's body: %s", members)
	}
	var n int
	if err := c.pool.QueryRow(ctxT(t), `SELECT count(*) FROM data_keys WHERE account = 'alice'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("alice's data keys: %d rows (%v)", n, err)
	}

	emptyPG := postgrestest.Config(t)
	_, emptyPrefix := redistest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := postgres.Open(ctx, emptyPG)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var out, errOut bytes.Buffer
	// Without --key-schema the keys are looked for in the new, empty
	// schema: the replay ends at the first sealed body instead of
	// rebuilding every body as erased.
	err = run([]string{"replay", "--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4",
		"--projection", "store", "--postgres-dsn", emptyPG.DSN, "--postgres-schema", emptyPG.Schema}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "holds no data keys") {
		t.Fatalf("a replay with no keys in its key schema: %v, want holds no data keys\n%s", err, errOut.String())
	}
	if h := (&testCluster{t: t, pool: pool}).pgHistory(corpus.direct); len(h) != 0 {
		t.Fatalf("the refused replay stored %d messages of the direct conversation", len(h))
	}
	out.Reset()
	errOut.Reset()
	err = run([]string{"replay", "--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4",
		"--projection", "all", "--postgres-dsn", emptyPG.DSN, "--postgres-schema", emptyPG.Schema, "--key-schema", c.pg.Schema,
		"--redis-addr", redistest.Addr(), "--redis-prefix", emptyPrefix}, &out, &errOut)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut.String())
	}
	rebuilt := &testCluster{t: t, pool: pool}
	checkErased(t, "rebuilt history", rebuilt.pgHistory(corpus.direct), beforeDirect)
	// Rebuilt, each message has the revision it has live (alice's edited
	// message included: the erasure's, not its edit's), so that a sync
	// with changes reports the erasure alike from either.
	revisions := func(p *pgxpool.Pool) string {
		rows, err := p.Query(ctx, `SELECT msg_id, revision, deleted FROM direct_messages ORDER BY msg_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, rev int64
			var deleted bool
			if err := rows.Scan(&id, &rev, &deleted); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(id, "@", rev, " deleted ", deleted))
		}
		return strings.Join(out, "; ")
	}
	if live, re := revisions(c.pool), revisions(pool); live != re {
		t.Errorf("revisions live: %s\nrebuilt: %s", live, re)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM direct_messages WHERE position('SECRET-A' in convert_from(body, 'UTF8')) > 0`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rebuilt tables hold alice's body in %d rows (%v)", n, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM direct_messages WHERE convert_from(body, 'UTF8') = 'bob keeps this'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rebuilt tables hold bob's body in %d rows (%v), want 1", n, err)
	}
	if members := strings.Join(cacheMembers(t, c.rdb, emptyPrefix, corpus.direct), "\n"); strings.Contains(members, "SECRET-A") ||
		!strings.Contains(members, "bob keeps this") {
		t.Errorf("the rebuilt cache: %s", members)
	}
}

// A log written before bodies were sealed asks for no key: it replays
// into a schema that holds none.
func TestReplayOfPlaintextLogNeedsNoKeys(t *testing.T) {
	c := startCluster(t)
	l, err := kafka.Open(kafka.Config{Brokers: c.brokers, Topic: "plain.conversations.v1", UsersTopic: "plain.users.v1", Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := l.Append(ctxT(t), fmt.Sprint("m", i), events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: fmt.Sprint("c", i),
			Conversation: "d:alice:bob", SenderAccount: "alice", SenderDevice: "phone", Kind: "text",
			Body: fmt.Sprint("plaintext ", i), ServerTime: time.Now().UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Close()
	var out, errOut bytes.Buffer
	if err := run([]string{"replay", "--kafka-brokers", strings.Join(c.brokers, ","), "--partitions", "4", "--topic", "plain.conversations.v1",
		"--projection", "store", "--postgres-dsn", c.pg.DSN, "--postgres-schema", c.pg.Schema}, &out, &errOut); err != nil {
		t.Fatalf("replay of a plaintext log with no data keys: %v\n%s", err, errOut.String())
	}
	if got := bodies(c.pgHistory("d:alice:bob")); fmt.Sprint(got) != "[plaintext 0 plaintext 1 plaintext 2]" {
		t.Errorf("replayed history %v", got)
	}
}

// An account whose only data is its mutes is known: erasing it removes
// them, where an account with nothing at all is not found.
func TestEraseAnAccountThatOnlyMuted(t *testing.T) {
	s := startServer(t, func(c *node.Config) { c.ServiceCredential = eraseCredential })
	dave := s.dial("dave", "phone")
	if _, err := dave.Mute(ctxT(t), "d:dave:erin", 0); err != nil {
		t.Fatal(err)
	}
	if status, body := eraseHTTP(t, s, "dave", "Bearer svc:"+eraseCredential); status != http.StatusOK {
		t.Fatalf("erase an account with only a mute = %d %v, want 200", status, body)
	}
	if status, _ := eraseHTTP(t, s, "dave", "Bearer svc:"+eraseCredential); status != http.StatusNotFound {
		t.Errorf("erase it again, with nothing left = %d, want 404", status)
	}
}
