package groups_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/groups/groupstest"
	"github.com/parley-chat/parley/projections/progress"
)

func TestMemoryContract(t *testing.T) {
	groupstest.Run(t, func(*testing.T) groupstest.Adapter { return groups.NewMemory() })
}

func TestPebbleContract(t *testing.T) {
	groupstest.Run(t, func(t *testing.T) groupstest.Adapter { return groups.NewPebble(pebbletest.Open(t), groups.Name) })
}

func TestPostgresContract(t *testing.T) {
	pool := postgrestest.Open(t)
	n := 0
	groupstest.Run(t, func(t *testing.T) groupstest.Adapter {
		// Each case its own groups: the suite reuses ids, so clean up.
		n++
		if _, err := pool.Exec(context.Background(), `TRUNCATE group_members, groups`); err != nil {
			t.Fatal(err)
		}
		return groups.NewPostgres(pool, groups.Name)
	})
}

// Processes of the version before migration 0009 run beside the new ones
// during a rolling deploy: a group they wrote (name only) reads back, and
// they read a group the new version wrote (its name without NUL) with the
// query they had.
func TestPostgresGroupNamesAcrossVersions(t *testing.T) {
	pool := postgrestest.Open(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO groups (group_id, name, owner, members) VALUES ('gold', 'old name', 'alice', 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO group_members (group_id, account) VALUES ('gold', 'alice')`); err != nil {
		t.Fatal(err)
	}
	g := groups.NewPostgres(pool, groups.Name)
	if got, ok, err := g.Group(ctx, "gold"); err != nil || !ok || got.Name() != "old name" {
		t.Fatalf("a group the version before wrote: %v %v %v", got, ok, err)
	}
	rec := projections.Record{Event: events.GroupCreated{Group: "gnew", Name: "a\x00b", Owner: "alice"}, Position: events.Position{Offset: 1}}
	if err := g.ApplyBatch(ctx, []projections.Record{rec}); err != nil {
		t.Fatal(err)
	}
	var name string // the version before's read: text
	if err := pool.QueryRow(ctx, `SELECT name FROM groups WHERE group_id = 'gnew'`).Scan(&name); err != nil || name != "a\uFFFDb" {
		t.Fatalf("the version before reads %q (%v), want the name without NUL", name, err)
	}
	if got, _, err := g.Group(ctx, "gnew"); err != nil || got.Name() != "a\x00b" {
		t.Fatalf("this version reads %v (%v), want the name as created", got, err)
	}
}

// The embedded store commits its progress with the changes: a new reader
// of the same store starts right after the last batch.
func TestPebbleCommitsProgressWithTheChanges(t *testing.T) {
	db := pebbletest.Open(t)
	g := groups.NewPebble(db, "groups@e1")
	recs := []projections.Record{
		{Event: events.GroupCreated{Group: "g1", Owner: "alice"}, Position: events.Position{Partition: 2, Offset: 40}},
		{Event: events.MessageSent{Conversation: "g:g1"}, Position: events.Position{Partition: 2, Offset: 41}},
	}
	if err := g.ApplyBatch(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	tr, err := progress.New(context.Background(), progress.NewPebble(db, "groups@e1"), progress.Config{Name: "groups"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := tr.Next(2); got != 42 {
		t.Fatalf("progress after the batch: %d, want 42", got)
	}
}

// At answers from memory until the push projection tells it that a group
// event passed; then it reads again, after the model has applied it.
func TestAtMembersAt(t *testing.T) {
	m := groups.NewMemory()
	tr := progress.NewMemory()
	at := &groups.At{Model: m, Progress: tr}
	rec := func(e events.Event, off int64) projections.Record {
		return projections.Record{Event: e, Position: events.Position{Offset: off}}
	}
	ctx := context.Background()
	_ = m.Apply(ctx, rec(events.GroupCreated{Group: "g1", Owner: "alice", Members: []string{"bob"}}, 0))
	tr.Advance(0, 0)
	ms, err := at.MembersAt(ctx, "g1", rec(events.MessageSent{}, 1))
	if err != nil || !reflect.DeepEqual(ms, []domain.AccountID{"alice", "bob"}) {
		t.Fatalf("MembersAt = %v %v", ms, err)
	}
	// An add at offset 2: until At is told, it answers from memory.
	at.Changed("g1")
	got := make(chan []domain.AccountID, 1)
	go func() {
		ms, _ := at.MembersAt(ctx, "g1", rec(events.MessageSent{}, 3))
		got <- ms
	}()
	select {
	case ms := <-got:
		t.Fatalf("MembersAt returned %v before the add was applied", ms)
	case <-time.After(20 * time.Millisecond):
	}
	_ = m.Apply(ctx, rec(events.GroupMembersAdded{Group: "g1", Accounts: []string{"carol"}}, 2))
	tr.Advance(0, 2)
	select {
	case ms := <-got:
		if !reflect.DeepEqual(ms, []domain.AccountID{"alice", "bob", "carol"}) {
			t.Fatalf("MembersAt = %v, want alice bob carol", ms)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("MembersAt did not return")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	at.Changed("g1")
	if _, err := at.MembersAt(cctx, "g1", rec(events.MessageSent{}, 9)); !errors.Is(err, context.Canceled) {
		t.Errorf("MembersAt with a cancelled context = %v", err)
	}
}

// The cache answers from memory within its TTL, forgets on Forget, and
// never keeps a refusal.
func TestCache(t *testing.T) {
	m := groups.NewMemory()
	ctx := context.Background()
	_ = m.Apply(ctx, projections.Record{Event: events.GroupCreated{Group: "g1", Owner: "alice", Members: []string{"bob"}}})
	c := groups.NewCache(m, time.Hour, 100)
	if _, member, _ := c.IsMember(ctx, "g1", "bob"); !member {
		t.Fatal("bob is not a member")
	}
	_ = m.Apply(ctx, projections.Record{Event: events.GroupMembersRemoved{Group: "g1", Accounts: []string{"bob"}}})
	if _, member, _ := c.IsMember(ctx, "g1", "bob"); !member {
		t.Fatal("the cache did not answer from memory")
	}
	c.Forget("g1")
	if _, member, _ := c.IsMember(ctx, "g1", "bob"); member {
		t.Fatal("a forgotten group answered from memory")
	}
	_ = m.Apply(ctx, projections.Record{Event: events.GroupMembersAdded{Group: "g1", Accounts: []string{"carol"}}})
	if _, member, _ := c.IsMember(ctx, "g1", "carol"); !member {
		t.Fatal("a refusal was answered from memory: carol, added since, is refused")
	}
}
