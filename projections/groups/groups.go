// Package groups is the group membership read model: which groups exist,
// who owns them and who belongs to them. The operations authorize group
// sends and syncs with it and push fans group messages out with it. It
// lives in memory (tests), in the embedded store (a single node) or in
// PostgreSQL (scale-out); every adapter passes groupstest.
package groups

import (
	"context"
	"fmt"
	"slices"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Name is the projection's stable name.
const Name = "parley.projection.groups"

// Model is the read side of the groups read model.
type Model interface {
	// Group returns a copy of group g; ok is false when there is none.
	Group(ctx context.Context, g domain.GroupID) (grp *domain.Group, ok bool, err error)
	// IsMember reports whether g exists and whether a belongs to it.
	IsMember(ctx context.Context, g domain.GroupID, a domain.AccountID) (exists, member bool, err error)
	// GroupsOf lists copies of the groups a belongs to.
	GroupsOf(ctx context.Context, a domain.AccountID) ([]*domain.Group, error)
	// GroupIDsOf lists the ids of the groups a belongs to, sorted, without
	// reading the groups: the conversation list needs no members, and an
	// account may be in many groups of 500.
	GroupIDsOf(ctx context.Context, a domain.AccountID) ([]domain.GroupID, error)
}

// change is one group event as the adapters apply it. Group events are
// facts: they are applied without the rules of who may change a group,
// and as set operations they are idempotent. One rule is applied, by
// every adapter alike: an add that would take a group past
// domain.MaxGroupMembers changes nothing (two adds accepted at the same
// time can each fit and together pass it; the later one in the log loses).
type change struct {
	group domain.GroupID
	// created is the new group of a GroupCreated.
	created *domain.Group
	// add is true for GroupMembersAdded, false for GroupMembersRemoved.
	add      bool
	accounts []domain.AccountID
}

// changeOf reads the change a record makes; ok is false for records that
// are not group events. A group event that fails validation is poison.
func changeOf(r projections.Record) (c change, ok bool, err error) {
	switch e := r.Event.(type) {
	case events.GroupCreated:
		members, err := events.Accounts(e.Members)
		if err != nil {
			return change{}, true, &projections.PoisonError{Err: err}
		}
		g, err := domain.NewGroup(domain.GroupID(e.Group), e.Name, domain.AccountID(e.Owner), members)
		if err != nil {
			return change{}, true, &projections.PoisonError{Err: err}
		}
		return change{group: g.ID(), created: g}, true, nil
	case events.GroupMembersAdded:
		return accountsChange(e.Group, e.Accounts, true)
	case events.GroupMembersRemoved:
		return accountsChange(e.Group, e.Accounts, false)
	}
	return change{}, false, nil
}

func accountsChange(group string, accounts []string, add bool) (change, bool, error) {
	id, err := domain.ParseGroupID(group)
	if err != nil {
		return change{}, true, &projections.PoisonError{Err: err}
	}
	as, err := events.Accounts(accounts)
	if err != nil {
		return change{}, true, &projections.PoisonError{Err: err}
	}
	return change{group: id, add: add, accounts: as}, true, nil
}

// changesOf reads the changes of a batch, skipping (and reporting through
// skip) poison ones.
func changesOf(recs []projections.Record, skip func(projections.Record, error)) []change {
	var out []change
	for _, r := range recs {
		c, ok, err := changeOf(r)
		if err != nil {
			if skip != nil {
				skip(r, err)
			}
			continue
		}
		if ok {
			out = append(out, c)
		}
	}
	return out
}

// unknownGroup is the poison error of a change to a group that does not
// exist (its GroupCreated is not in this log, say).
func unknownGroup(g domain.GroupID) error {
	return &projections.PoisonError{Err: fmt.Errorf("members changed in unknown group %q", g)}
}

// withoutOwner is the accounts c adds, or removes but for g's owner: an
// owner is always a member (domain.Group.Remove), so a removal that names
// it leaves it in the group and in its list of groups.
func withoutOwner(g *domain.Group, c change) []domain.AccountID {
	if c.add || !slices.Contains(c.accounts, g.Owner()) {
		return c.accounts
	}
	return slices.DeleteFunc(slices.Clone(c.accounts), func(a domain.AccountID) bool { return a == g.Owner() })
}
