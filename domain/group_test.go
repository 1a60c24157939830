package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// accounts returns n distinct valid account ids with the given prefix.
func accounts(prefix string, n int) []domain.AccountID {
	out := make([]domain.AccountID, n)
	for i := range out {
		out[i] = domain.AccountID(fmt.Sprintf("%s%04d", prefix, i))
	}
	return out
}

func mustGroup(t *testing.T, owner domain.AccountID, members ...domain.AccountID) *domain.Group {
	t.Helper()
	g, err := domain.NewGroup("g1", "friends", owner, members)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	return g
}

func TestNewGroup(t *testing.T) {
	tests := []struct {
		name        string
		id          domain.GroupID
		groupName   string
		owner       domain.AccountID
		members     []domain.AccountID
		wantMembers []domain.AccountID
		wantField   string
		wantLimit   bool
	}{
		{name: "owner only", id: "g1", groupName: "solo", owner: "alice", wantMembers: []domain.AccountID{"alice"}},
		{name: "owner is always a member, listed sorted and once", id: "g1", groupName: "x", owner: "carol",
			members: []domain.AccountID{"bob", "carol", "alice", "bob"}, wantMembers: []domain.AccountID{"alice", "bob", "carol"}},
		{name: "empty name is allowed", id: "g1", owner: "alice", wantMembers: []domain.AccountID{"alice"}},
		{name: "name at max bytes", id: "g1", groupName: strings.Repeat("n", domain.MaxGroupNameBytes), owner: "alice", wantMembers: []domain.AccountID{"alice"}},
		{name: "exactly MaxGroupMembers with owner", id: "g1", owner: "owner", members: accounts("m", domain.MaxGroupMembers-1),
			wantMembers: append(accounts("m", domain.MaxGroupMembers-1), "owner")},

		{name: "bad group id", id: "g:1", owner: "alice", wantField: "group"},
		{name: "empty group id", id: "", owner: "alice", wantField: "group"},
		{name: "name over max bytes", id: "g1", groupName: strings.Repeat("n", domain.MaxGroupNameBytes+1), owner: "alice", wantField: "name"},
		{name: "name invalid UTF-8", id: "g1", groupName: "\xff", owner: "alice", wantField: "name"},
		{name: "bad member id", id: "g1", owner: "alice", members: []domain.AccountID{"bob", "b/ad"}, wantField: "account"},
		{name: "one over MaxGroupMembers", id: "g1", owner: "owner", members: accounts("m", domain.MaxGroupMembers), wantLimit: true},
		{name: "too many accounts in the request", id: "g1", owner: "owner", members: accounts("m", domain.MaxGroupMembers+1), wantLimit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := domain.NewGroup(tt.id, tt.groupName, tt.owner, tt.members)
			switch {
			case tt.wantLimit:
				if !errors.Is(err, domain.ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				return
			case tt.wantField != "":
				var inv *domain.InvalidError
				if !errors.As(err, &inv) || inv.Field != tt.wantField {
					t.Fatalf("err = %v, want *InvalidError on %q", err, tt.wantField)
				}
				if g != nil {
					t.Errorf("NewGroup returned a group with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewGroup: %v", err)
			}
			if g.ID() != tt.id || g.Name() != tt.groupName || g.Owner() != tt.owner {
				t.Errorf("group = %q %q %q, want %q %q %q", g.ID(), g.Name(), g.Owner(), tt.id, tt.groupName, tt.owner)
			}
			if got := g.Members(); !reflect.DeepEqual(got, tt.wantMembers) {
				t.Errorf("Members() = %v, want %v", got, tt.wantMembers)
			}
			if g.Size() != len(tt.wantMembers) {
				t.Errorf("Size() = %d, want %d", g.Size(), len(tt.wantMembers))
			}
		})
	}
}

// NewGroup is the validating constructor of a group, and the groups
// projection relies on it to turn a GroupCreated with bad ids into a poison
// record. The owner becomes a member, so it must be a valid account id like
// every other member.
func TestNewGroupRejectsInvalidOwner(t *testing.T) {
	for _, owner := range []domain.AccountID{"", "a:b", "a/b", domain.AccountID(strings.Repeat("o", domain.MaxIDLen+1))} {
		t.Run(fmt.Sprintf("%.10q", owner), func(t *testing.T) {
			g, err := domain.NewGroup("g1", "x", owner, []domain.AccountID{"bob"})
			var inv *domain.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("NewGroup with owner %q = %v, %v; want *InvalidError", owner, g, err)
			}
		})
	}
}

func TestGroupCanAdd(t *testing.T) {
	small := func(t *testing.T) *domain.Group { return mustGroup(t, "owner", "bob") }
	full := func(t *testing.T) *domain.Group {
		return mustGroup(t, "owner", accounts("m", domain.MaxGroupMembers-1)...)
	}
	almostFull := func(t *testing.T) *domain.Group {
		return mustGroup(t, "owner", accounts("m", domain.MaxGroupMembers-2)...)
	}
	tests := []struct {
		name     string
		group    func(*testing.T) *domain.Group
		by       domain.AccountID
		add      []domain.AccountID
		wantErr  error // matched with errors.Is; nil means success
		wantInv  bool
		wantGotN int // for limit errors, the size the group would have
	}{
		{name: "owner adds", group: small, by: "owner", add: []domain.AccountID{"carol"}},
		{name: "member adds", group: small, by: "bob", add: []domain.AccountID{"carol", "dave"}},
		{name: "adding existing members is fine", group: small, by: "bob", add: []domain.AccountID{"owner", "bob"}},
		{name: "adding nobody is fine", group: small, by: "bob"},
		{name: "non-member cannot add", group: small, by: "mallory", add: []domain.AccountID{"carol"}, wantErr: domain.ErrNotMember},
		{name: "non-member cannot add itself", group: small, by: "mallory", add: []domain.AccountID{"mallory"}, wantErr: domain.ErrNotMember},
		{name: "bad account id", group: small, by: "bob", add: []domain.AccountID{"carol", "x:y"}, wantInv: true},
		{name: "fill to the limit", group: almostFull, by: "owner", add: []domain.AccountID{"last"}},
		{name: "duplicates count once", group: almostFull, by: "owner", add: []domain.AccountID{"last", "last", "last"}},
		{name: "existing members do not count", group: full, by: "owner", add: []domain.AccountID{"owner", "m0000"}},
		{name: "one over the limit", group: full, by: "owner", add: []domain.AccountID{"extra"}, wantErr: domain.ErrTooLarge, wantGotN: domain.MaxGroupMembers + 1},
		{name: "two over the limit", group: almostFull, by: "m0001", add: []domain.AccountID{"x1", "x2", "x3"}, wantErr: domain.ErrTooLarge, wantGotN: domain.MaxGroupMembers + 2},
		{name: "request listing too many accounts", group: small, by: "owner", add: accounts("n", domain.MaxGroupMembers+1), wantErr: domain.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.group(t)
			before := g.Members()
			err := g.CanAdd(tt.by, tt.add)
			switch {
			case tt.wantInv:
				var inv *domain.InvalidError
				if !errors.As(err, &inv) {
					t.Fatalf("CanAdd = %v, want *InvalidError", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("CanAdd = %v, want %v", err, tt.wantErr)
				}
				var le *domain.LimitError
				if tt.wantGotN != 0 && (!errors.As(err, &le) || le.Got != tt.wantGotN || le.Limit != domain.MaxGroupMembers) {
					t.Errorf("CanAdd = %#v, want LimitError{Got: %d, Limit: %d}", err, tt.wantGotN, domain.MaxGroupMembers)
				}
			default:
				if err != nil {
					t.Fatalf("CanAdd = %v, want nil", err)
				}
			}
			if after := g.Members(); !reflect.DeepEqual(before, after) {
				t.Errorf("CanAdd changed the group")
			}
		})
	}
}

func TestGroupCanRemove(t *testing.T) {
	tests := []struct {
		name    string
		by      domain.AccountID
		remove  []domain.AccountID
		wantErr error
		wantInv bool
	}{
		{name: "owner removes a member", by: "owner", remove: []domain.AccountID{"bob"}},
		{name: "owner removes several", by: "owner", remove: []domain.AccountID{"bob", "carol"}},
		{name: "member leaves", by: "bob", remove: []domain.AccountID{"bob"}},
		{name: "removing nobody", by: "bob"},
		{name: "owner cannot remove itself", by: "owner", remove: []domain.AccountID{"owner"}, wantErr: domain.ErrForbidden},
		{name: "member cannot remove the owner", by: "bob", remove: []domain.AccountID{"owner"}, wantErr: domain.ErrForbidden},
		{name: "member cannot remove another member", by: "bob", remove: []domain.AccountID{"carol"}, wantErr: domain.ErrForbidden},
		{name: "member leaving with another is refused", by: "bob", remove: []domain.AccountID{"bob", "carol"}, wantErr: domain.ErrForbidden},
		{name: "owner among others is refused", by: "owner", remove: []domain.AccountID{"bob", "owner"}, wantErr: domain.ErrForbidden},
		{name: "non-member cannot remove", by: "mallory", remove: []domain.AccountID{"bob"}, wantErr: domain.ErrNotMember},
		{name: "non-member cannot leave", by: "mallory", remove: []domain.AccountID{"mallory"}, wantErr: domain.ErrNotMember},
		{name: "bad account id", by: "owner", remove: []domain.AccountID{"b ob"}, wantInv: true},
		{name: "request listing too many accounts", by: "owner", remove: accounts("n", domain.MaxGroupMembers+1), wantErr: domain.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustGroup(t, "owner", "bob", "carol")
			err := g.CanRemove(tt.by, tt.remove)
			switch {
			case tt.wantInv:
				var inv *domain.InvalidError
				if !errors.As(err, &inv) {
					t.Fatalf("CanRemove = %v, want *InvalidError", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("CanRemove = %v, want %v", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("CanRemove = %v, want nil", err)
				}
			}
			if g.Size() != 3 {
				t.Errorf("CanRemove changed the group: size %d", g.Size())
			}
		})
	}
}

func TestGroupAddRemoveClone(t *testing.T) {
	g := mustGroup(t, "owner", "bob")
	c := g.Clone()

	g.Add([]domain.AccountID{"carol", "carol", "bob"})
	if got, want := g.Members(), []domain.AccountID{"bob", "carol", "owner"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after Add: %v, want %v", got, want)
	}
	g.Remove([]domain.AccountID{"bob", "nobody"})
	if got, want := g.Members(), []domain.AccountID{"carol", "owner"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after Remove: %v, want %v", got, want)
	}
	if g.IsMember("bob") || !g.IsMember("carol") {
		t.Errorf("IsMember: bob %v carol %v", g.IsMember("bob"), g.IsMember("carol"))
	}
	// The clone shares nothing with the original.
	if got, want := c.Members(), []domain.AccountID{"bob", "owner"}; !reflect.DeepEqual(got, want) {
		t.Errorf("clone changed with the original: %v, want %v", got, want)
	}
	c.Add([]domain.AccountID{"zed"})
	if g.IsMember("zed") {
		t.Errorf("adding to the clone changed the original")
	}
	if c.ID() != g.ID() || c.Name() != g.Name() || c.Owner() != g.Owner() {
		t.Errorf("clone lost id, name or owner")
	}
}

// Two adds that each fit can together pass the limit; the later one in the
// log changes nothing.
func TestGroupAddNeverPassesTheLimit(t *testing.T) {
	g := mustGroup(t, "owner", accounts("m", domain.MaxGroupMembers-6)...)
	first, second := accounts("a", 4), accounts("b", 4)
	if err := g.CanAdd("owner", first); err != nil {
		t.Fatal(err)
	}
	if err := g.CanAdd("owner", second); err != nil {
		t.Fatal(err)
	}
	if !g.Add(first) {
		t.Fatal("the first add was refused")
	}
	if g.Add(second) {
		t.Fatal("the second add passed the limit")
	}
	if g.Size() != domain.MaxGroupMembers-1 || g.IsMember("b0000") {
		t.Errorf("size %d after a refused add, b0000 member %v", g.Size(), g.IsMember("b0000"))
	}
	if !g.Add(accounts("m", 10)) {
		t.Error("adding existing members is refused at the limit")
	}
}
