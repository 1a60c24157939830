package groups

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Cache keeps recently read groups in memory in front of a Model, for the
// membership check of every group send. An entry lives TTL at most, and
// Forget drops it at once: the process that applies a change (the
// embedded node's projection, or a gateway after its own change) forgets
// the group; other gateways see the change within TTL. Negative answers
// are never cached, and Refresh reads through: the operations check a
// refusal again, fresh, before they answer it.
type Cache struct {
	model Model
	ttl   time.Duration
	// maxMembers bounds the members of every cached group together: a
	// group of 500 costs as much as 500 groups of one.
	maxMembers int
	now        func() time.Time

	mu      sync.Mutex
	entries map[domain.GroupID]cached
	members int
}

type cached struct {
	group   *domain.Group
	expires time.Time
}

// NewCache caches groups of model, each for ttl, with at most maxMembers
// members in all.
func NewCache(model Model, ttl time.Duration, maxMembers int) *Cache {
	return &Cache{model: model, ttl: ttl, maxMembers: maxMembers, now: time.Now, entries: map[domain.GroupID]cached{}}
}

var _ Model = (*Cache)(nil)

func (c *Cache) get(g domain.GroupID) (*domain.Group, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[g]
	if !ok || c.now().After(e.expires) {
		return nil, false
	}
	return e.group, true
}

func (c *Cache) put(g *domain.Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked(g.ID())
	for k := range c.entries { // drop any: a miss only costs a read
		if c.members+g.Size() <= c.maxMembers {
			break
		}
		c.forgetLocked(k)
	}
	c.entries[g.ID()] = cached{group: g, expires: c.now().Add(c.ttl)}
	c.members += g.Size()
}

func (c *Cache) forgetLocked(g domain.GroupID) {
	if e, ok := c.entries[g]; ok {
		c.members -= e.group.Size()
		delete(c.entries, g)
	}
}

// Forget drops g's entry: it changed.
func (c *Cache) Forget(g domain.GroupID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked(g)
}

// Group implements Model.
func (c *Cache) Group(ctx context.Context, g domain.GroupID) (*domain.Group, bool, error) {
	if grp, ok := c.get(g); ok {
		return grp.Clone(), true, nil
	}
	return c.Refresh(ctx, g)
}

// Refresh reads g through to the model and caches what it finds.
func (c *Cache) Refresh(ctx context.Context, g domain.GroupID) (*domain.Group, bool, error) {
	grp, ok, err := c.model.Group(ctx, g)
	if err != nil || !ok {
		c.Forget(g)
		return nil, false, err
	}
	c.put(grp.Clone())
	return grp, true, nil
}

// IsMember implements Model.
func (c *Cache) IsMember(ctx context.Context, g domain.GroupID, a domain.AccountID) (bool, bool, error) {
	if grp, ok := c.get(g); ok && grp.IsMember(a) {
		return true, true, nil
	}
	grp, ok, err := c.Refresh(ctx, g)
	if err != nil || !ok {
		return false, false, err
	}
	return true, grp.IsMember(a), nil
}

// GroupIDsOf implements Model: always read through.
func (c *Cache) GroupIDsOf(ctx context.Context, a domain.AccountID) ([]domain.GroupID, error) {
	return c.model.GroupIDsOf(ctx, a)
}

// GroupsOf implements Model: always read through (a list, after a login).
func (c *Cache) GroupsOf(ctx context.Context, a domain.AccountID) ([]*domain.Group, error) {
	return c.model.GroupsOf(ctx, a)
}

// At resolves a group's members for the push projection, as of a
// message's position in the log: it waits until the model has applied
// every record before the message (group events and their group's
// messages share a partition), then reads the members — from memory when
// no group event of the group has passed since it last read them. The push
// projection reads every record of its partitions in order and tells At
// of each group event (Changed), so a cached member list is exact, not
// merely recent.
type At struct {
	Model    Model
	Progress projections.Tracker

	mu      sync.Mutex
	members map[domain.GroupID][]domain.AccountID
}

// maxAtGroups bounds At's memory: 1,000 groups of 500 members are ~13 MB.
const maxAtGroups = 1000

// MembersAt implements push.Members.
func (a *At) MembersAt(ctx context.Context, g domain.GroupID, r projections.Record) ([]domain.AccountID, error) {
	a.mu.Lock()
	ms, ok := a.members[g]
	a.mu.Unlock()
	if ok {
		return ms, nil
	}
	if err := a.Progress.WaitFor(ctx, r.Position.Partition, r.Position.Offset); err != nil {
		return nil, err
	}
	grp, found, err := a.Model.Group(ctx, g)
	if err != nil || !found {
		return nil, err
	}
	ms = grp.Members()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.members == nil || len(a.members) >= maxAtGroups {
		a.members = map[domain.GroupID][]domain.AccountID{}
	}
	a.members[g] = ms
	return ms, nil
}

// Changed implements push.Members: a group event of g passed.
func (a *At) Changed(g domain.GroupID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.members, g)
}
