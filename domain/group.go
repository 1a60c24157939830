package domain

import (
	"fmt"
	"sort"
	"unicode/utf8"
)

// Group limits.
const (
	// MaxGroupMembers is the largest group, owner included.
	MaxGroupMembers = 500
	// MaxGroupNameBytes is the longest group name.
	MaxGroupNameBytes = 128
)

// Group is a named set of accounts that share one conversation. Its owner
// (the creator) may remove anyone; any member may add members; a member may
// remove itself (leave).
type Group struct {
	id      GroupID
	name    string
	owner   AccountID
	members map[AccountID]struct{}
}

// NewGroup validates a group as created by owner with the initial members
// (the owner is always a member).
func NewGroup(id GroupID, name string, owner AccountID, members []AccountID) (*Group, error) {
	if _, err := ParseGroupID(string(id)); err != nil {
		return nil, err
	}
	if len(name) > MaxGroupNameBytes || !utf8.ValidString(name) {
		return nil, &InvalidError{Field: "name", Reason: fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxGroupNameBytes)}
	}
	if _, err := ParseAccountID(string(owner)); err != nil {
		return nil, err
	}
	g := &Group{id: id, name: name, owner: owner, members: map[AccountID]struct{}{owner: {}}}
	if err := g.checkAccounts(members); err != nil {
		return nil, err
	}
	for _, m := range members {
		g.members[m] = struct{}{}
	}
	if len(g.members) > MaxGroupMembers {
		return nil, &LimitError{Field: "group members", Limit: MaxGroupMembers, Got: len(g.members)}
	}
	return g, nil
}

// ID is the group's id.
func (g *Group) ID() GroupID { return g.id }

// Name is the group's display name.
func (g *Group) Name() string { return g.name }

// Owner is the account that created the group.
func (g *Group) Owner() AccountID { return g.owner }

// IsMember reports whether a belongs to the group.
func (g *Group) IsMember(a AccountID) bool { _, ok := g.members[a]; return ok }

// Members lists the members in a stable order.
func (g *Group) Members() []AccountID {
	out := make([]AccountID, 0, len(g.members))
	for m := range g.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Size is the number of members.
func (g *Group) Size() int { return len(g.members) }

// CanAdd checks that by may add accounts and that the group stays in bounds.
func (g *Group) CanAdd(by AccountID, accounts []AccountID) error {
	if !g.IsMember(by) {
		return ErrNotMember
	}
	if err := g.checkAccounts(accounts); err != nil {
		return err
	}
	n := len(g.members)
	for _, a := range uniq(accounts) {
		if !g.IsMember(a) {
			n++
		}
	}
	if n > MaxGroupMembers {
		return &LimitError{Field: "group members", Limit: MaxGroupMembers, Got: n}
	}
	return nil
}

// CanRemove checks that by may remove accounts: the owner removes anyone but
// itself, a member removes only itself.
func (g *Group) CanRemove(by AccountID, accounts []AccountID) error {
	if !g.IsMember(by) {
		return ErrNotMember
	}
	if err := g.checkAccounts(accounts); err != nil {
		return err
	}
	for _, a := range accounts {
		if a == g.owner {
			return fmt.Errorf("cannot remove the owner: %w", ErrForbidden)
		}
		if by != g.owner && a != by {
			return fmt.Errorf("only the owner removes other members: %w", ErrForbidden)
		}
	}
	return nil
}

// Add applies a MembersAdded from the log. It checks no rule of who may
// add — events in the log are facts — but the size: two adds accepted at
// the same time can each fit and together pass MaxGroupMembers, and then
// the one later in the log changes nothing and Add reports false. Every
// reader of the log applies the same rule, so they all agree.
func (g *Group) Add(accounts []AccountID) bool {
	n := len(g.members)
	for _, a := range uniq(accounts) {
		if !g.IsMember(a) {
			n++
		}
	}
	if n > MaxGroupMembers {
		return false
	}
	for _, a := range accounts {
		g.members[a] = struct{}{}
	}
	return true
}

// Remove applies an accepted MembersRemoved. The owner stays: an owner is
// always a member (CanRemove refuses it; a removal on the log that names
// it anyway changes nothing for it).
func (g *Group) Remove(accounts []AccountID) {
	for _, a := range accounts {
		if a != g.owner {
			delete(g.members, a)
		}
	}
}

// Clone returns a copy that shares nothing with g.
func (g *Group) Clone() *Group {
	c := *g
	c.members = make(map[AccountID]struct{}, len(g.members))
	for m := range g.members {
		c.members[m] = struct{}{}
	}
	return &c
}

func (g *Group) checkAccounts(accounts []AccountID) error {
	if len(accounts) > MaxGroupMembers {
		return &LimitError{Field: "accounts in one request", Limit: MaxGroupMembers, Got: len(accounts)}
	}
	for _, a := range accounts {
		if _, err := ParseAccountID(string(a)); err != nil {
			return err
		}
	}
	return nil
}

func uniq(in []AccountID) []AccountID {
	seen := make(map[AccountID]struct{}, len(in))
	out := in[:0:0]
	for _, a := range in {
		if _, ok := seen[a]; !ok {
			seen[a] = struct{}{}
			out = append(out, a)
		}
	}
	return out
}
