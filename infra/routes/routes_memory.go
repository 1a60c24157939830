package routes

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Memory is the in-process Table of a single node. Presence (LastSeen
// included) lives in memory: a restart forgets it.
type Memory struct {
	now func() time.Time

	mu     sync.Mutex
	routes map[domain.UniqueID]entry
	// online lists each account's routed devices: a slice, not a set,
	// as an account has few, and most one (a map each was about 250
	// bytes of an idle connection's memory).
	online map[domain.AccountID][]domain.UniqueID
	alive  map[string]time.Time
	// lastBeat is each instance's last beat; devices its routed devices.
	lastBeat map[string]time.Time
	devices  map[string]map[domain.UniqueID]struct{}
	presence map[domain.AccountID]*presenceState

	// watchMu is taken before mu is let go by a change, and held while
	// the change is delivered, so that watchers see changes in order.
	watchMu  sync.Mutex
	watchers map[int]func(domain.Presence)
	nextW    int
}

type entry struct {
	instance string
	expires  time.Time
}

// presenceState is one account's presence: online, and the last time one
// of its devices was known connected.
type presenceState struct {
	online bool
	seen   time.Time
}

// NewMemory returns an empty table.
func NewMemory() *Memory {
	return &Memory{now: time.Now, routes: map[domain.UniqueID]entry{}, online: map[domain.AccountID][]domain.UniqueID{},
		alive: map[string]time.Time{}, lastBeat: map[string]time.Time{}, devices: map[string]map[domain.UniqueID]struct{}{},
		presence: map[domain.AccountID]*presenceState{}, watchers: map[int]func(domain.Presence){}}
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

// unlock lets mu go and delivers changes, in order with every other
// change.
func (m *Memory) unlock(changes []domain.Presence) {
	if len(changes) == 0 {
		m.mu.Unlock()
		return
	}
	m.watchMu.Lock()
	m.mu.Unlock()
	defer m.watchMu.Unlock()
	for _, c := range changes {
		for _, f := range m.watchers {
			f(c)
		}
	}
}

func (m *Memory) state(a domain.AccountID) *presenceState {
	st := m.presence[a]
	if st == nil {
		st = &presenceState{}
		m.presence[a] = st
	}
	return st
}

// arrived marks a online, and reports the change if it is one.
func (m *Memory) arrived(a domain.AccountID, changes []domain.Presence) []domain.Presence {
	st := m.state(a)
	if st.online {
		return changes
	}
	st.online = true
	return append(changes, domain.Presence{Account: a, Online: true, LastSeen: st.seen})
}

// left records that a device of a was connected until at, and marks a
// offline if none of its devices is routed any more.
func (m *Memory) left(a domain.AccountID, at time.Time, now time.Time, changes []domain.Presence) []domain.Presence {
	st := m.state(a)
	if at.After(st.seen) {
		st.seen = at
	}
	if !st.online {
		return changes
	}
	for _, u := range m.online[a] {
		if _, ok := m.route(u, now); ok {
			return changes
		}
	}
	st.online = false
	return append(changes, domain.Presence{Account: a, LastSeen: st.seen})
}

// release removes uid's route if instance holds it.
func (m *Memory) release(uid domain.UniqueID, instance string, at, now time.Time, changes []domain.Presence) []domain.Presence {
	cur, ok := m.routes[uid]
	if !ok || cur.instance != instance {
		return changes
	}
	delete(m.routes, uid)
	delete(m.devices[instance], uid)
	a, _ := uid.Split()
	if devs := slices.DeleteFunc(m.online[a], func(u domain.UniqueID) bool { return u == uid }); len(devs) > 0 {
		m.online[a] = devs
	} else {
		delete(m.online, a)
	}
	return m.left(a, at, now, changes)
}

// Claim implements Table.
func (m *Memory) Claim(_ context.Context, uid domain.UniqueID, instance string, force bool) (string, error) {
	now := m.now()
	m.mu.Lock()
	cur, ok := m.route(uid, now)
	if ok && cur.instance != instance && !force && m.isAlive(cur.instance, now) {
		m.mu.Unlock()
		return cur.instance, ErrHeld
	}
	m.routes[uid] = entry{instance: instance, expires: now.Add(RouteTTL)}
	a, _ := uid.Split()
	if !slices.Contains(m.online[a], uid) {
		m.online[a] = append(m.online[a], uid)
	}
	if ok && cur.instance != instance {
		delete(m.devices[cur.instance], uid)
	}
	devs := m.devices[instance]
	if devs == nil {
		devs = map[domain.UniqueID]struct{}{}
		m.devices[instance] = devs
	}
	devs[uid] = struct{}{}
	m.unlock(m.arrived(a, nil))
	return cur.instance, nil
}

// Release implements Table.
func (m *Memory) Release(_ context.Context, uid domain.UniqueID, instance string) error {
	now := m.now()
	m.mu.Lock()
	m.unlock(m.release(uid, instance, now, now, nil))
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
	devs := m.online[account]
	return append(make([]domain.UniqueID, 0, len(devs)), devs...), nil
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
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alive[instance] = now.Add(AliveTTL)
	m.lastBeat[instance] = now
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
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.alive, instance)
	if _, ok := m.lastBeat[instance]; ok {
		m.lastBeat[instance] = now
	}
	return nil
}

// Presence implements Table.
func (m *Memory) Presence(_ context.Context, accounts []domain.AccountID) ([]domain.Presence, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]domain.Presence, len(accounts))
	for i, a := range accounts {
		out[i] = domain.Presence{Account: a}
		if st := m.presence[a]; st != nil {
			out[i].Online, out[i].LastSeen = st.online, st.seen
		}
	}
	return out, nil
}

// WatchPresence implements Table. In one process nothing is missed, so
// resync is never called.
func (m *Memory) WatchPresence(ctx context.Context, f func(domain.Presence), _ func()) (func(), error) {
	m.watchMu.Lock()
	id := m.nextW
	m.nextW++
	m.watchers[id] = f
	m.watchMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		m.watchMu.Lock()
		delete(m.watchers, id)
		m.watchMu.Unlock()
	}()
	return func() { <-done }, nil
}

// Reap implements Table.
func (m *Memory) Reap(context.Context) (int, error) {
	now := m.now()
	m.mu.Lock()
	var changes []domain.Presence
	n := 0
	for inst, last := range m.lastBeat {
		if m.isAlive(inst, now) {
			continue
		}
		n += len(m.devices[inst])
		changes = m.forsake(inst, last, now, changes)
		delete(m.lastBeat, inst)
	}
	m.unlock(changes)
	return n, nil
}

// Forsake implements Table.
func (m *Memory) Forsake(_ context.Context, instance string) (int, error) {
	now := m.now()
	m.mu.Lock()
	at, ok := m.lastBeat[instance]
	if !ok {
		at = now
	}
	n := len(m.devices[instance])
	m.unlock(m.forsake(instance, at, now, nil))
	return n, nil
}

func (m *Memory) forsake(instance string, at, now time.Time, changes []domain.Presence) []domain.Presence {
	for uid := range m.devices[instance] {
		changes = m.release(uid, instance, at, now, changes)
	}
	delete(m.devices, instance)
	return changes
}
