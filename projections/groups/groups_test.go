package groups_test

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/progress"
)

func rec(e events.Event, offset int64) projections.Record {
	return projections.Record{Event: e, Position: events.Position{Partition: 0, Offset: offset}}
}

var everyone = []domain.AccountID{"alice", "bob", "carol", "dave", "erin"}

// state is what a reader can observe of the model, in a comparable form.
type state struct {
	Members map[domain.GroupID][]domain.AccountID
	Of      map[domain.AccountID][]domain.GroupID
}

func snapshot(m *groups.Memory, gs ...domain.GroupID) state {
	s := state{Members: map[domain.GroupID][]domain.AccountID{}, Of: map[domain.AccountID][]domain.GroupID{}}
	for _, g := range gs {
		s.Members[g] = m.Members(g)
	}
	for _, a := range everyone {
		var ids []domain.GroupID
		for _, g := range m.GroupsOf(a) {
			ids = append(ids, g.ID())
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		s.Of[a] = ids
	}
	return s
}

func apply(t *testing.T, m *groups.Memory, r projections.Record) {
	t.Helper()
	if err := m.Apply(context.Background(), r); err != nil {
		t.Fatalf("Apply(%T): %v", r.Event, err)
	}
}

func TestMemoryApply(t *testing.T) {
	created := events.GroupCreated{Group: "g1", Name: "friends", Owner: "alice", Members: []string{"bob"}, At: 1}
	created2 := events.GroupCreated{Group: "g2", Name: "work", Owner: "bob", Members: []string{"carol", "dave"}, At: 2}
	added := events.GroupMembersAdded{Group: "g1", By: "bob", Accounts: []string{"carol", "dave"}, At: 3}
	removed := events.GroupMembersRemoved{Group: "g1", By: "alice", Accounts: []string{"bob", "dave"}, At: 4}
	left := events.GroupMembersRemoved{Group: "g2", By: "carol", Accounts: []string{"carol"}, At: 5}
	msg := events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: "c", Conversation: "g:g1", SenderAccount: "alice", SenderDevice: "p", Body: "x"}

	tests := []struct {
		name   string
		events []events.Event
		want   state
	}{
		{
			name:   "created",
			events: []events.Event{created},
			want: state{
				Members: map[domain.GroupID][]domain.AccountID{"g1": {"alice", "bob"}, "g2": nil},
				Of:      map[domain.AccountID][]domain.GroupID{"alice": {"g1"}, "bob": {"g1"}},
			},
		},
		{
			name:   "added",
			events: []events.Event{created, created2, added},
			want: state{
				Members: map[domain.GroupID][]domain.AccountID{"g1": {"alice", "bob", "carol", "dave"}, "g2": {"bob", "carol", "dave"}},
				Of:      map[domain.AccountID][]domain.GroupID{"alice": {"g1"}, "bob": {"g1", "g2"}, "carol": {"g1", "g2"}, "dave": {"g1", "g2"}},
			},
		},
		{
			name:   "removed and left",
			events: []events.Event{created, created2, added, removed, left},
			want: state{
				Members: map[domain.GroupID][]domain.AccountID{"g1": {"alice", "carol"}, "g2": {"bob", "dave"}},
				Of:      map[domain.AccountID][]domain.GroupID{"alice": {"g1"}, "bob": {"g2"}, "carol": {"g1"}, "dave": {"g2"}},
			},
		},
		{
			name:   "removed then added back",
			events: []events.Event{created, removed, events.GroupMembersAdded{Group: "g1", By: "alice", Accounts: []string{"bob"}}},
			want: state{
				Members: map[domain.GroupID][]domain.AccountID{"g1": {"alice", "bob"}, "g2": nil},
				Of:      map[domain.AccountID][]domain.GroupID{"alice": {"g1"}, "bob": {"g1"}},
			},
		},
		{
			name:   "messages are ignored",
			events: []events.Event{created, msg},
			want: state{
				Members: map[domain.GroupID][]domain.AccountID{"g1": {"alice", "bob"}, "g2": nil},
				Of:      map[domain.AccountID][]domain.GroupID{"alice": {"g1"}, "bob": {"g1"}},
			},
		},
		{
			name:   "a second GroupCreated for the same id is ignored",
			events: []events.Event{created, events.GroupCreated{Group: "g1", Name: "hijack", Owner: "erin", Members: []string{"erin"}}},
			want: state{
				Members: map[domain.GroupID][]domain.AccountID{"g1": {"alice", "bob"}, "g2": nil},
				Of:      map[domain.AccountID][]domain.GroupID{"alice": {"g1"}, "bob": {"g1"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, a := range everyone {
				if _, ok := tt.want.Of[a]; !ok {
					tt.want.Of[a] = nil
				}
			}
			once := groups.NewMemory()
			twice := groups.NewMemory() // every record replayed right after itself
			replayed := groups.NewMemory()
			for i, e := range tt.events {
				apply(t, once, rec(e, int64(i)))
				apply(t, twice, rec(e, int64(i)))
				apply(t, twice, rec(e, int64(i)))
			}
			// the whole log, then the whole log again (a replay after a crash)
			for i, e := range append(append([]events.Event{}, tt.events...), tt.events...) {
				apply(t, replayed, rec(e, int64(i%len(tt.events))))
			}
			got := snapshot(once, "g1", "g2")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("state = %+v\nwant    %+v", got, tt.want)
			}
			if g := snapshot(twice, "g1", "g2"); !reflect.DeepEqual(g, got) {
				t.Errorf("replaying each record twice changed the model:\n%+v\nvs once %+v", g, got)
			}
			if g := snapshot(replayed, "g1", "g2"); !reflect.DeepEqual(g, got) {
				t.Errorf("replaying the whole log changed the model:\n%+v\nvs once %+v", g, got)
			}
		})
	}
}

func TestMemoryApplyPoison(t *testing.T) {
	base := events.GroupCreated{Group: "g1", Name: "friends", Owner: "alice", Members: []string{"bob"}}
	tests := []struct {
		name  string
		event events.Event
	}{
		{"added to unknown group", events.GroupMembersAdded{Group: "nope", By: "alice", Accounts: []string{"carol"}}},
		{"removed from unknown group", events.GroupMembersRemoved{Group: "nope", By: "alice", Accounts: []string{"bob"}}},
		{"added with a bad account", events.GroupMembersAdded{Group: "g1", By: "alice", Accounts: []string{"carol", "x:y"}}},
		{"removed with a bad account", events.GroupMembersRemoved{Group: "g1", By: "alice", Accounts: []string{""}}},
		{"created with a bad group id", events.GroupCreated{Group: "a b", Owner: "alice"}},
		{"created with an empty group id", events.GroupCreated{Owner: "alice"}},
		{"created with a bad member", events.GroupCreated{Group: "g2", Owner: "alice", Members: []string{"b/ob"}}},
		{"created with a bad owner", events.GroupCreated{Group: "g2", Owner: "al:ice"}},
		{"created with an invalid name", events.GroupCreated{Group: "g2", Owner: "alice", Name: "\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := groups.NewMemory()
			apply(t, m, rec(base, 0))
			before := snapshot(m, "g1", "g2", "nope")
			err := m.Apply(context.Background(), rec(tt.event, 1))
			var poison *projections.PoisonError
			if !errors.As(err, &poison) {
				t.Fatalf("Apply = %v, want *PoisonError", err)
			}
			if after := snapshot(m, "g1", "g2", "nope"); !reflect.DeepEqual(after, before) {
				t.Errorf("a poison record changed the model:\n%+v\nwas %+v", after, before)
			}
			if _, ok := m.Group("nope"); ok {
				t.Errorf("unknown group came into existence")
			}
		})
	}
}

func TestMemoryReadsReturnCopies(t *testing.T) {
	m := groups.NewMemory()
	apply(t, m, rec(events.GroupCreated{Group: "g1", Name: "friends", Owner: "alice", Members: []string{"bob"}}, 0))

	g, ok := m.Group("g1")
	if !ok {
		t.Fatal("Group(g1) not found")
	}
	if g.Name() != "friends" || g.Owner() != "alice" || g.ID() != "g1" {
		t.Errorf("Group = %q %q %q", g.ID(), g.Name(), g.Owner())
	}
	g.Add([]domain.AccountID{"mallory"})
	for _, gg := range m.GroupsOf("alice") {
		gg.Remove([]domain.AccountID{"bob"})
	}
	if got := m.Members("g1"); !reflect.DeepEqual(got, []domain.AccountID{"alice", "bob"}) {
		t.Errorf("model changed through a returned group: %v", got)
	}
	tests := []struct {
		name       string
		group      domain.GroupID
		account    domain.AccountID
		exists, is bool
	}{
		{"owner", "g1", "alice", true, true},
		{"member", "g1", "bob", true, true},
		{"non-member", "g1", "mallory", true, false},
		{"unknown group", "g9", "alice", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exists, is := m.IsMember(tt.group, tt.account)
			if exists != tt.exists || is != tt.is {
				t.Errorf("IsMember(%q, %q) = %v, %v; want %v, %v", tt.group, tt.account, exists, is, tt.exists, tt.is)
			}
		})
	}
	if _, ok := m.Group("g9"); ok {
		t.Errorf("Group(g9) found")
	}
	if got := m.Members("g9"); got != nil {
		t.Errorf("Members(g9) = %v", got)
	}
	if got := m.GroupsOf("nobody"); len(got) != 0 {
		t.Errorf("GroupsOf(nobody) = %v", got)
	}
}

// MembersAt answers as of a record's position: it waits until every record
// before it in the partition is applied, then reads the members.
func TestAtMembersAt(t *testing.T) {
	m := groups.NewMemory()
	progress := progress.NewMemory()
	at := groups.At{Model: m, Progress: progress}
	apply(t, m, rec(events.GroupCreated{Group: "g1", Owner: "alice", Members: []string{"bob"}}, 0))
	progress.Advance(0, 0)

	msg := rec(events.MessageSent{Conversation: "g:g1"}, 2) // offset 1 (an add) comes first
	got := make(chan []domain.AccountID, 1)
	errc := make(chan error, 1)
	go func() {
		ms, err := at.MembersAt(context.Background(), "g1", msg)
		errc <- err
		got <- ms
	}()
	select {
	case err := <-errc:
		t.Fatalf("MembersAt returned before offset 1 was applied: %v %v", err, <-got)
	case <-time.After(20 * time.Millisecond):
	}
	apply(t, m, rec(events.GroupMembersAdded{Group: "g1", By: "bob", Accounts: []string{"carol"}}, 1))
	progress.Advance(0, 1)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("MembersAt = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("MembersAt did not return")
	}
	if ms := <-got; !reflect.DeepEqual(ms, []domain.AccountID{"alice", "bob", "carol"}) {
		t.Errorf("MembersAt = %v, want alice bob carol", ms)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := at.MembersAt(ctx, "g1", rec(events.MessageSent{}, 9)); !errors.Is(err, context.Canceled) {
		t.Errorf("MembersAt with a cancelled context = %v, want context.Canceled", err)
	}
}
