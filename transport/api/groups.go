package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

// A group change draws on its author's send budget (GroupChangeCost) once
// its rules are checked, before it is appended: anyone may create groups
// with anyone in them, so without it one account could write membership
// rows as fast as its connections' request rates allow.

// CreateGroup creates a group owned by by.Account with the given members.
func (s *Service) CreateGroup(ctx context.Context, by Actor, name string, members []string) (*domain.Group, error) {
	who := by.Account
	accounts, err := parseAccounts(members)
	if err != nil {
		return nil, err
	}
	id := domain.GroupID("g" + strings.ReplaceAll(uuid.NewString(), "-", ""))
	g, err := domain.NewGroup(id, name, who, accounts)
	if err != nil {
		return nil, err
	}
	e := events.GroupCreated{Group: string(id), Name: name, Owner: string(who), Members: accountStrings(g.Members()), At: s.cfg.Now().UnixMilli()}
	return s.appendGroupChange(ctx, by, len(accounts), id, e)
}

// AddMembers adds accounts to group g on behalf of by.Account.
func (s *Service) AddMembers(ctx context.Context, by Actor, group string, accounts []string) (*domain.Group, error) {
	who := by.Account
	g, as, err := s.groupChange(ctx, who, group, accounts)
	if err != nil {
		return nil, err
	}
	if err := g.CanAdd(who, as); err != nil {
		return nil, err
	}
	e := events.GroupMembersAdded{Group: string(g.ID()), By: string(who), Accounts: accountStrings(as), At: s.cfg.Now().UnixMilli()}
	after, err := s.appendGroupChange(ctx, by, len(as), g.ID(), e)
	if err != nil {
		return nil, err
	}
	// A concurrent add may have filled the group first: then the log
	// applied this one as nothing.
	for _, a := range as {
		if !after.IsMember(a) {
			return nil, &domain.LimitError{Field: "group members", Limit: domain.MaxGroupMembers, Got: after.Size() + len(as)}
		}
	}
	return after, nil
}

// RemoveMembers removes accounts from group g on behalf of by.Account.
func (s *Service) RemoveMembers(ctx context.Context, by Actor, group string, accounts []string) (*domain.Group, error) {
	who := by.Account
	g, as, err := s.groupChange(ctx, who, group, accounts)
	if err != nil {
		return nil, err
	}
	if err := g.CanRemove(who, as); err != nil {
		return nil, err
	}
	e := events.GroupMembersRemoved{Group: string(g.ID()), By: string(who), Accounts: accountStrings(as), At: s.cfg.Now().UnixMilli()}
	return s.appendGroupChange(ctx, by, len(as), g.ID(), e)
}

// appendGroupChange charges a change listing n accounts to by's send
// budget, then appends it (appendGroupEvent). The cost is given back when
// the change was not appended; an unavailable log, which may still have
// appended it, keeps it.
func (s *Service) appendGroupChange(ctx context.Context, by Actor, n int, id domain.GroupID, e events.Event) (_ *domain.Group, err error) {
	cost, err := s.spendGroupChange(by, n)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && !errors.Is(err, ErrUnavailable) {
			cost.giveBack()
		}
	}()
	return s.appendGroupEvent(ctx, id, e)
}

func (s *Service) groupChange(ctx context.Context, who domain.AccountID, group string, accounts []string) (*domain.Group, []domain.AccountID, error) {
	id, err := domain.ParseGroupID(group)
	if err != nil {
		return nil, nil, err
	}
	if len(accounts) == 0 {
		return nil, nil, &domain.InvalidError{Field: "accounts", Reason: "is empty"}
	}
	as, err := parseAccounts(accounts)
	if err != nil {
		return nil, nil, err
	}
	// Read fresh after catching up: another instance may have created
	// the group or changed it a moment ago, and the rules are checked
	// against what the group is now.
	if err := s.catchUp(ctx, s.rm.GroupsProgress, domain.GroupConversation(id)); err != nil {
		return nil, nil, err
	}
	g, ok, err := s.freshGroup(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("group %s: %w", id, domain.ErrNotFound)
	}
	return g, as, nil
}

// appendGroupEvent appends e and waits until the groups model applied it, so
// that the caller's next request already sees the change.
func (s *Service) appendGroupEvent(ctx context.Context, id domain.GroupID, e events.Event) (*domain.Group, error) {
	pos, err := s.append(ctx, uuid.NewString(), e)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.rm.GroupsProgress.WaitFor(ctx, pos.Partition, pos.Offset+1); err != nil {
		return nil, fmt.Errorf("group change is in the log but not applied yet: %w: %v", ErrUnavailable, err)
	}
	g, ok, err := s.freshGroup(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("group %s vanished: %w", id, ErrUnavailable)
	}
	return g, nil
}

// Group is group as it is now, for one of its members: read after the
// groups model has applied everything acknowledged before the call.
func (s *Service) Group(ctx context.Context, by Actor, group string) (*domain.Group, error) {
	if err := s.spendRead(by); err != nil {
		return nil, err
	}
	who := by.Account
	id, err := domain.ParseGroupID(group)
	if err != nil {
		return nil, err
	}
	if err := s.catchUp(ctx, s.rm.GroupsProgress, domain.GroupConversation(id)); err != nil {
		return nil, err
	}
	g, ok, err := s.freshGroup(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("group %s: %w", id, domain.ErrNotFound)
	case !g.IsMember(who):
		return nil, fmt.Errorf("group %s: %w", id, domain.ErrNotMember)
	}
	return g, nil
}

// MaxGroupsReplyBytes bounds one page of an account's groups, about as
// encoded: an account may be in any number of groups of 500, and a list
// of them all could pass what one connection may queue (4 MiB).
const MaxGroupsReplyBytes = 1 << 20

// MaxGroupsPage bounds the groups of one page: each is read fresh, past
// a cache (a query each in scale-out).
const MaxGroupsPage = 100

// GroupsBytesPerRead is how many bytes of groups one read of the read
// budget pays for in a page of groups: reading and encoding a page of
// large groups costs several times a sync page of the same size (each
// group is read fresh and its members checked), and anyone may put an
// account in groups of 500.
const GroupsBytesPerRead = 64 << 10

// GroupsPage lists the groups who belongs to after the group id after
// ("" for the first page), in id order, once the groups model has applied
// everything acknowledged before the call: at most MaxGroupsPage, as many
// as fit in MaxGroupsReplyBytes (at least one), and whether more follow.
// Only the page's groups are read, each fresh (a cache in front of the
// model may be behind another gateway's change), and one that no longer
// holds who is left out. A page takes one read of by's read budget, and
// once answered one more for each GroupsBytesPerRead it lists.
func (s *Service) GroupsPage(ctx context.Context, by Actor, after string) ([]*domain.Group, bool, error) {
	if err := s.spendRead(by); err != nil {
		return nil, false, err
	}
	who := by.Account
	if after != "" {
		if _, err := domain.ParseGroupID(after); err != nil {
			return nil, false, &domain.InvalidError{Field: "after", Reason: "is not a group id"}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	if err := s.catchUpAll(ctx, s.rm.GroupsProgress); err != nil {
		return nil, false, err
	}
	ids, err := s.rm.Groups.GroupIDsOf(ctx, who)
	if err != nil {
		return nil, false, fmt.Errorf("cannot read the groups of %s: %w: %v", who, ErrUnavailable, err)
	}
	var out []*domain.Group
	size, more := 0, false
	for _, id := range ids {
		if string(id) <= after {
			continue
		}
		if len(out) == MaxGroupsPage {
			more = true
			break
		}
		g, ok, err := s.freshGroup(ctx, id)
		if err != nil {
			return nil, false, err
		}
		if !ok || !g.IsMember(who) {
			continue
		}
		n := groupBytes(g)
		if len(out) > 0 && size+n > MaxGroupsReplyBytes {
			more = true // g, at least, follows
			break
		}
		out, size = append(out, g), size+n
	}
	s.chargeReads(by, size/GroupsBytesPerRead)
	return out, more, nil
}

// groupBytes is about the size of g as a reply encodes it (a name's
// characters may be escaped to six bytes each).
func groupBytes(g *domain.Group) int {
	n := 64 + len(g.ID()) + len(g.Owner()) + 6*len(g.Name())
	for _, m := range g.Members() {
		n += len(m) + 3
	}
	return n
}

func parseAccounts(in []string) ([]domain.AccountID, error) {
	if len(in) > domain.MaxGroupMembers {
		return nil, &domain.LimitError{Field: "accounts in one request", Limit: domain.MaxGroupMembers, Got: len(in)}
	}
	return events.Accounts(in)
}

func accountStrings(in []domain.AccountID) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = string(a)
	}
	return out
}

// idempotency makes sends with one client message id produce one message:
// concurrent retries wait for the first, later ones find its ack in recent
