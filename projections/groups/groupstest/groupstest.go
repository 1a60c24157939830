// Package groupstest is the contract every groups adapter passes: memory,
// the embedded store (Pebble) and PostgreSQL apply the same records to the
// same observable state.
package groupstest

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/groups"
)

// Adapter is a groups model that a projection writes: a
// projections.Batcher or a projections.Projection.
type Adapter interface {
	groups.Model
}

// Open returns a new, empty adapter for one case.
type Open func(t *testing.T) Adapter

// apply hands recs to a, as the runner does: in one batch when it can.
func apply(t *testing.T, a Adapter, recs ...projections.Record) {
	t.Helper()
	ctx := context.Background()
	if b, ok := a.(projections.Batcher); ok {
		if err := b.ApplyBatch(ctx, recs); err != nil {
			t.Fatalf("ApplyBatch: %v", err)
		}
		return
	}
	p, ok := a.(projections.Projection)
	if !ok {
		t.Fatalf("%T is neither a Batcher nor a Projection", a)
	}
	for _, r := range recs {
		if err := p.Apply(ctx, r); err != nil {
			if _, poison := err.(*projections.PoisonError); !poison {
				t.Fatalf("Apply: %v", err)
			}
		}
	}
}

// records turns events into records of partition 0 at offsets from.
func records(from int64, es ...events.Event) []projections.Record {
	out := make([]projections.Record, len(es))
	for i, e := range es {
		out[i] = projections.Record{Event: e, Position: events.Position{Partition: 0, Offset: from + int64(i)}}
	}
	return out
}

func members(t *testing.T, a Adapter, g domain.GroupID) []domain.AccountID {
	t.Helper()
	grp, ok, err := a.Group(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil
	}
	return grp.Members()
}

func groupsOf(t *testing.T, a Adapter, acc domain.AccountID) []domain.GroupID {
	t.Helper()
	gs, err := a.GroupsOf(context.Background(), acc)
	if err != nil {
		t.Fatal(err)
	}
	var ids []domain.GroupID
	for _, g := range gs {
		ids = append(ids, g.ID())
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	// GroupIDsOf lists the same, sorted, without reading the groups.
	only, err := a.GroupIDsOf(context.Background(), acc)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(only) != fmt.Sprint(ids) {
		t.Errorf("GroupIDsOf(%s) = %v, GroupsOf's ids %v", acc, only, ids)
	}
	return ids
}

func accounts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// Run runs the contract against adapters made by open.
func Run(t *testing.T, open Open) {
	ctx := context.Background()
	created := events.GroupCreated{Group: "g1", Name: "friends", Owner: "alice", Members: []string{"bob"}}

	t.Run("a created group reads back", func(t *testing.T) {
		a := open(t)
		apply(t, a, records(0, created, events.GroupCreated{Group: "g2", Name: "work", Owner: "bob", Members: []string{"carol"}})...)
		g, ok, err := a.Group(ctx, "g1")
		if err != nil || !ok {
			t.Fatalf("Group(g1): %v %v", ok, err)
		}
		if g.Name() != "friends" || g.Owner() != "alice" || !reflect.DeepEqual(g.Members(), []domain.AccountID{"alice", "bob"}) {
			t.Fatalf("g1 = %q %q %v", g.Name(), g.Owner(), g.Members())
		}
		for _, tc := range []struct {
			g              domain.GroupID
			a              domain.AccountID
			exists, member bool
		}{{"g1", "alice", true, true}, {"g1", "bob", true, true}, {"g1", "carol", true, false}, {"g9", "alice", false, false}} {
			exists, member, err := a.IsMember(ctx, tc.g, tc.a)
			if err != nil || exists != tc.exists || member != tc.member {
				t.Errorf("IsMember(%s, %s) = %v %v %v, want %v %v", tc.g, tc.a, exists, member, err, tc.exists, tc.member)
			}
		}
		if got := groupsOf(t, a, "bob"); !reflect.DeepEqual(got, []domain.GroupID{"g1", "g2"}) {
			t.Errorf("GroupsOf(bob) = %v", got)
		}
		if _, ok, _ := a.Group(ctx, "g9"); ok {
			t.Error("Group(g9) found")
		}
		// A second GroupCreated of the same id changes nothing.
		apply(t, a, records(2, events.GroupCreated{Group: "g1", Name: "other", Owner: "mallory"})...)
		if g, _, _ := a.Group(ctx, "g1"); g.Owner() != "alice" {
			t.Errorf("a second creation replaced the group: owner %s", g.Owner())
		}
	})

	t.Run("a name with nul bytes reads back", func(t *testing.T) {
		// A name is any valid UTF-8 (domain.NewGroup), NUL included, which
		// PostgreSQL's text does not take: a store that failed on it would
		// stall the projection on the record for good.
		a := open(t)
		name := "a\x00b\x00"
		apply(t, a, records(0, events.GroupCreated{Group: "g1", Name: name, Owner: "alice", Members: []string{"bob"}})...)
		g, ok, err := a.Group(ctx, "g1")
		if err != nil || !ok {
			t.Fatalf("Group(g1): %v %v", ok, err)
		}
		if g.Name() != name {
			t.Fatalf("name %q, want %q", g.Name(), name)
		}
		gs, err := a.GroupsOf(ctx, "bob")
		if err != nil || len(gs) != 1 || gs[0].Name() != name {
			t.Fatalf("GroupsOf(bob) = %v %v", gs, err)
		}
	})

	t.Run("a removal that names the owner leaves the owner", func(t *testing.T) {
		// An owner is always a member (domain.Group); erasures of owners
		// before 2026-12-01 put such removals on the log.
		a := open(t)
		apply(t, a, records(0, created, events.GroupMembersRemoved{Group: "g1", By: "alice", Accounts: []string{"alice", "bob"}})...)
		if got := members(t, a, "g1"); !reflect.DeepEqual(got, []domain.AccountID{"alice"}) {
			t.Fatalf("members %v, want [alice]", got)
		}
		if got := groupsOf(t, a, "alice"); !reflect.DeepEqual(got, []domain.GroupID{"g1"}) {
			t.Errorf("GroupsOf(alice) = %v, want [g1]", got)
		}
		if got := groupsOf(t, a, "bob"); len(got) != 0 {
			t.Errorf("GroupsOf(bob) = %v, want none", got)
		}
		if exists, member, err := a.IsMember(ctx, "g1", "alice"); err != nil || !exists || !member {
			t.Errorf("IsMember(g1, alice) = %v %v %v", exists, member, err)
		}
		// The count held beside the members stays exact: 499 more fit.
		apply(t, a, records(2, events.GroupMembersAdded{Group: "g1", By: "alice", Accounts: accounts("m", domain.MaxGroupMembers-1)})...)
		if got := members(t, a, "g1"); len(got) != domain.MaxGroupMembers {
			t.Errorf("%d members after filling the group, want %d", len(got), domain.MaxGroupMembers)
		}
	})

	t.Run("adds and removes, replayed, give the same state", func(t *testing.T) {
		a := open(t)
		batch := records(0, created,
			events.GroupMembersAdded{Group: "g1", By: "bob", Accounts: []string{"carol", "dave", "carol"}},
			events.GroupMembersRemoved{Group: "g1", By: "alice", Accounts: []string{"bob", "nobody"}},
			events.GroupMembersAdded{Group: "g1", By: "carol", Accounts: []string{"erin"}},
			events.GroupMembersRemoved{Group: "g1", By: "erin", Accounts: []string{"erin"}},
			events.MessageSent{Conversation: "g:g1"},
		)
		apply(t, a, batch...)
		want := []domain.AccountID{"alice", "carol", "dave"}
		if got := members(t, a, "g1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("members %v, want %v", got, want)
		}
		apply(t, a, batch...) // a redelivery after a crash
		apply(t, a, batch[2:]...)
		if got := members(t, a, "g1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("members after replay %v, want %v", got, want)
		}
		if got := groupsOf(t, a, "bob"); len(got) != 0 {
			t.Errorf("bob left but GroupsOf(bob) = %v", got)
		}
		if got := groupsOf(t, a, "dave"); !reflect.DeepEqual(got, []domain.GroupID{"g1"}) {
			t.Errorf("GroupsOf(dave) = %v", got)
		}
	})

	t.Run("an add past the size limit changes nothing", func(t *testing.T) {
		a := open(t)
		apply(t, a, records(0, events.GroupCreated{Group: "big", Owner: "owner", Members: accounts("m", domain.MaxGroupMembers-5)})...)
		apply(t, a, records(1,
			events.GroupMembersAdded{Group: "big", By: "owner", Accounts: []string{"x1", "x2", "x3"}},
			events.GroupMembersAdded{Group: "big", By: "owner", Accounts: []string{"y1", "y2", "y3"}}, // would make 501
			events.GroupMembersAdded{Group: "big", By: "owner", Accounts: []string{"m000", "x1", "z1"}},
		)...)
		// 496 + x1..x3 = 499; y1..y3 would make 502; z1 makes 500.
		got := members(t, a, "big")
		if len(got) != domain.MaxGroupMembers {
			t.Fatalf("%d members, want %d", len(got), domain.MaxGroupMembers)
		}
		if _, y1, _ := a.IsMember(ctx, "big", "y1"); y1 {
			t.Error("the add past the limit was applied")
		}
		if _, z1, _ := a.IsMember(ctx, "big", "z1"); !z1 {
			t.Error("an add that fits, after one that did not, was not applied")
		}
	})

	t.Run("a change to an unknown group is skipped, the rest applies", func(t *testing.T) {
		a := open(t)
		apply(t, a, records(0,
			events.GroupMembersAdded{Group: "ghost", By: "x", Accounts: []string{"y"}},
			created,
		)...)
		if got := members(t, a, "g1"); len(got) != 2 {
			t.Fatalf("members of g1 %v", got)
		}
		if _, ok, _ := a.Group(ctx, "ghost"); ok {
			t.Fatal("a group appeared from an add")
		}
	})

	t.Run("returned groups are copies", func(t *testing.T) {
		a := open(t)
		apply(t, a, records(0, created)...)
		g, _, _ := a.Group(ctx, "g1")
		g.Add([]domain.AccountID{"mallory"})
		gs, _ := a.GroupsOf(ctx, "alice")
		for _, x := range gs {
			x.Remove([]domain.AccountID{"bob"})
		}
		if got := members(t, a, "g1"); !reflect.DeepEqual(got, []domain.AccountID{"alice", "bob"}) {
			t.Errorf("the model changed through a returned group: %v", got)
		}
	})
}
