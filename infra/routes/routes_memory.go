package routes

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Memory is the in-process Table of a single node.
type Memory struct {
	now func() time.Time

	mu     sync.Mutex
	routes map[domain.UniqueID]entry
	online map[domain.AccountID]map[domain.UniqueID]struct{}
	alive  map[string]time.Time
}

type entry struct {
	instance string
	expires  time.Time
}

// NewMemory returns an empty table.
func NewMemory() *Memory {
	return &Memory{now: time.Now, routes: map[domain.UniqueID]entry{}, online: map[domain.AccountID]map[domain.UniqueID]struct{}{}, alive: map[string]time.Time{}}
}

func (m *Memory) route(uid domain.UniqueID, now time.Time) (entry, bool) {
	e, ok := m.routes[uid]
	if ok && now.After(e.expires) {
		delete(m.routes, uid)
		return entry{}, false
	}
	return e, ok
}

func (m *Memory) isAlive(instance string, now time.Time) bool {
	t, ok := m.alive[instance]
	return ok && !now.After(t)
}

// Claim implements Table.
func (m *Memory) Claim(_ context.Context, uid domain.UniqueID, instance string, force bool) (string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.route(uid, now)
	if ok && cur.instance != instance && !force && m.isAlive(cur.instance, now) {
		return cur.instance, ErrHeld
	}
	m.routes[uid] = entry{instance: instance, expires: now.Add(RouteTTL)}
	a, _ := uid.Split()
	set := m.online[a]
	if set == nil {
		set = map[domain.UniqueID]struct{}{}
		m.online[a] = set
	}
	set[uid] = struct{}{}
	return cur.instance, nil
}

// Release implements Table.
func (m *Memory) Release(_ context.Context, uid domain.UniqueID, instance string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.routes[uid]; ok && cur.instance == instance {
		delete(m.routes, uid)
		a, _ := uid.Split()
		delete(m.online[a], uid)
		if len(m.online[a]) == 0 {
			delete(m.online, a)
		}
	}
	return nil
}

// Refresh implements Table.
func (m *Memory) Refresh(_ context.Context, uid domain.UniqueID, instance string) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.route(uid, now); ok && cur.instance == instance {
		cur.expires = now.Add(RouteTTL)
		m.routes[uid] = cur
	}
	return nil
}

// Online implements Table.
func (m *Memory) Online(_ context.Context, account domain.AccountID) ([]domain.UniqueID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]domain.UniqueID, 0, len(m.online[account]))
	for uid := range m.online[account] {
		out = append(out, uid)
	}
	return out, nil
}

// Lookup implements Table.
func (m *Memory) Lookup(_ context.Context, uids []domain.UniqueID) (map[domain.UniqueID]string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[domain.UniqueID]string, len(uids))
	for _, u := range uids {
		if e, ok := m.route(u, now); ok {
			out[u] = e.instance
		}
	}
	return out, nil
}

// Beat implements Table.
func (m *Memory) Beat(_ context.Context, instance string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alive[instance] = m.now().Add(AliveTTL)
	return nil
}

// Alive implements Table.
func (m *Memory) Alive(_ context.Context, instance string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.isAlive(instance, m.now()), nil
}

// Forget implements Table.
func (m *Memory) Forget(_ context.Context, instance string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.alive, instance)
	return nil
}
