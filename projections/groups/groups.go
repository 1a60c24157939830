// Package groups is the group membership read model: which groups exist,
// who owns them and who belongs to them. The gateway authorizes group sends
// and syncs with it and push fans group messages out with it.
package groups

import (
	"context"
	"fmt"
	"sync"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
)

// Name is the projection's stable name.
const Name = "parley.projection.groups"

// Memory holds every group in memory, rebuilt from the log at start.
type Memory struct {
	mu        sync.RWMutex
	groups    map[domain.GroupID]*domain.Group
	byAccount map[domain.AccountID]map[domain.GroupID]struct{}
}

// NewMemory returns an empty model.
func NewMemory() *Memory {
	return &Memory{groups: map[domain.GroupID]*domain.Group{}, byAccount: map[domain.AccountID]map[domain.GroupID]struct{}{}}
}

// Apply implements projections.Projection. Group events are facts: they are
// applied without checking rules, and as set operations they are idempotent.
func (m *Memory) Apply(_ context.Context, r projections.Record) error {
	switch e := r.Event.(type) {
	case events.GroupCreated:
		members, err := events.Accounts(e.Members)
		if err != nil {
			return &projections.PoisonError{Err: err}
		}
		g, err := domain.NewGroup(domain.GroupID(e.Group), e.Name, domain.AccountID(e.Owner), members)
		if err != nil {
			return &projections.PoisonError{Err: err}
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, exists := m.groups[g.ID()]; exists {
			return nil
		}
		m.groups[g.ID()] = g
		m.index(g.ID(), g.Members(), true)
	case events.GroupMembersAdded:
		return m.change(e.Group, e.Accounts, true)
	case events.GroupMembersRemoved:
		return m.change(e.Group, e.Accounts, false)
	}
	return nil
}

func (m *Memory) change(group string, accounts []string, add bool) error {
	as, err := events.Accounts(accounts)
	if err != nil {
		return &projections.PoisonError{Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[domain.GroupID(group)]
	if g == nil {
		return &projections.PoisonError{Err: fmt.Errorf("members changed in unknown group %q", group)}
	}
	if add {
		if !g.Add(as) {
			return nil // past the size limit: the log's later add loses
		}
	} else {
		g.Remove(as)
	}
	m.index(g.ID(), as, add)
	return nil
}

func (m *Memory) index(g domain.GroupID, accounts []domain.AccountID, add bool) {
	for _, a := range accounts {
		set := m.byAccount[a]
		if add {
			if set == nil {
				set = map[domain.GroupID]struct{}{}
				m.byAccount[a] = set
			}
			set[g] = struct{}{}
		} else if set != nil {
			delete(set, g)
		}
	}
}

// Group returns a copy of group g.
func (m *Memory) Group(g domain.GroupID) (*domain.Group, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	grp := m.groups[g]
	if grp == nil {
		return nil, false
	}
	return grp.Clone(), true
}

// IsMember reports whether a belongs to g, without copying the group.
func (m *Memory) IsMember(g domain.GroupID, a domain.AccountID) (exists, member bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	grp := m.groups[g]
	if grp == nil {
		return false, false
	}
	return true, grp.IsMember(a)
}

// Members lists g's members.
func (m *Memory) Members(g domain.GroupID) []domain.AccountID {
	m.mu.RLock()
	defer m.mu.RUnlock()
	grp := m.groups[g]
	if grp == nil {
		return nil
	}
	return grp.Members()
}

// GroupsOf lists the groups a belongs to, as copies.
func (m *Memory) GroupsOf(a domain.AccountID) []*domain.Group {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*domain.Group, 0, len(m.byAccount[a]))
	for g := range m.byAccount[a] {
		out = append(out, m.groups[g].Clone())
	}
	return out
}

// At resolves a group's members as of a position in the log, waiting until
// the model has applied every record before it. Group events and the
// group's messages share a partition, so a message reaches exactly the
// members it was sent to.
type At struct {
	Model    *Memory
	Progress projections.Tracker
}

// MembersAt implements push.Members.
func (a At) MembersAt(ctx context.Context, g domain.GroupID, r projections.Record) ([]domain.AccountID, error) {
	if err := a.Progress.WaitFor(ctx, r.Position.Partition, r.Position.Offset); err != nil {
		return nil, err
	}
	return a.Model.Members(g), nil
}
