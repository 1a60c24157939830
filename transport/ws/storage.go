package ws

import (
	"sync"

	"github.com/lxzan/gws"
)

// storage is a connection's gws session storage. Parley keeps one or two
// keys there (sessionKey, and trustedKey for a trusted gateway's
// connection): held inline, they cost a fraction of the map gws makes
// for every connection by default (some 300 bytes).
type storage struct {
	mu     sync.Mutex
	pairs  []storagePair // inline[:n] until a third key
	inline [2]storagePair
}

type storagePair struct {
	key   string
	value any
}

var _ gws.SessionStorage = (*storage)(nil)

func newStorage() gws.SessionStorage {
	s := &storage{}
	s.pairs = s.inline[:0]
	return s
}

func (s *storage) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pairs)
}

func (s *storage) Load(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pairs {
		if p.key == key {
			return p.value, true
		}
	}
	return nil, false
}

func (s *storage) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pairs {
		if p.key == key {
			last := len(s.pairs) - 1
			s.pairs[i] = s.pairs[last]
			s.pairs[last] = storagePair{}
			s.pairs = s.pairs[:last]
			return
		}
	}
}

func (s *storage) Store(key string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pairs {
		if p.key == key {
			s.pairs[i].value = value
			return
		}
	}
	s.pairs = append(s.pairs, storagePair{key, value})
}

// Range calls f with each key and value, in no order, until f returns
// false; f must not use the storage.
func (s *storage) Range(f func(key string, value any) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pairs {
		if !f(p.key, p.value) {
			return
		}
	}
}
