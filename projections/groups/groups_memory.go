package groups

import (
	"context"
	"slices"
	"sync"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Memory holds every group in memory: for tests and tools, not for a
// server, whose groups must outlive the log (see Pebble, Postgres).
type Memory struct {
	mu        sync.RWMutex
	groups    map[domain.GroupID]*domain.Group
	byAccount map[domain.AccountID]map[domain.GroupID]struct{}
}

var _ Model = (*Memory)(nil)

// NewMemory returns an empty model.
func NewMemory() *Memory {
	return &Memory{groups: map[domain.GroupID]*domain.Group{}, byAccount: map[domain.AccountID]map[domain.GroupID]struct{}{}}
}

// Apply implements projections.Projection.
func (m *Memory) Apply(_ context.Context, r projections.Record) error {
	c, ok, err := changeOf(r)
	if !ok || err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.created != nil {
		if _, exists := m.groups[c.group]; !exists {
			m.groups[c.group] = c.created.Clone()
			m.index(c.group, c.created.Members(), true)
		}
		return nil
	}
	g := m.groups[c.group]
	if g == nil {
		return unknownGroup(c.group)
	}
	if c.add {
		if !g.Add(c.accounts) {
			return nil // past the size limit: the log's later add loses
		}
	} else {
		g.Remove(c.accounts)
	}
	m.index(g.ID(), withoutOwner(g, c), c.add)
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

// Group implements Model.
func (m *Memory) Group(_ context.Context, g domain.GroupID) (*domain.Group, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	grp := m.groups[g]
	if grp == nil {
		return nil, false, nil
	}
	return grp.Clone(), true, nil
}

// IsMember implements Model, without copying the group.
func (m *Memory) IsMember(_ context.Context, g domain.GroupID, a domain.AccountID) (bool, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	grp := m.groups[g]
	if grp == nil {
		return false, false, nil
	}
	return true, grp.IsMember(a), nil
}

// GroupIDsOf implements Model.
func (m *Memory) GroupIDsOf(_ context.Context, a domain.AccountID) ([]domain.GroupID, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]domain.GroupID, 0, len(m.byAccount[a]))
	for g := range m.byAccount[a] {
		out = append(out, g)
	}
	slices.Sort(out)
	return out, nil
}

// GroupsOf implements Model.
func (m *Memory) GroupsOf(_ context.Context, a domain.AccountID) ([]*domain.Group, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*domain.Group, 0, len(m.byAccount[a]))
	for g := range m.byAccount[a] {
		out = append(out, m.groups[g].Clone())
	}
	return out, nil
}
