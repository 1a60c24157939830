package keys

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/events"
)

// Memory keeps keys in memory, for tests and tools that need no
// durability: a restart destroys every key.
type Memory struct {
	mu        sync.Mutex
	byID      map[string]Key
	byAccount map[string]string
}

// NewMemory returns an empty key store.
func NewMemory() *Memory {
	return &Memory{byID: map[string]Key{}, byAccount: map[string]string{}}
}

// Current implements Store.
func (m *Memory) Current(_ context.Context, account string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byAccount[account]; ok {
		return m.byID[id], nil
	}
	k := newKey(account)
	m.byID[k.ID], m.byAccount[account] = k, k.ID
	return k, nil
}

// Key implements Store.
func (m *Memory) Key(_ context.Context, id string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.byID[id]
	if !ok {
		return Key{}, events.ErrKeyDestroyed
	}
	return k, nil
}

// Destroy implements Store.
func (m *Memory) Destroy(_ context.Context, account string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byAccount[account]
	if !ok {
		return nil, nil
	}
	delete(m.byAccount, account)
	delete(m.byID, id)
	return []string{id}, nil
}
