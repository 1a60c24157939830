package notify

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
)

// MemoryMutes is Mutes in memory, for tests.
type MemoryMutes struct {
	now func() time.Time

	mu sync.Mutex
	m  map[domain.AccountID]map[domain.ConversationID]int64
}

// NewMemoryMutes returns an empty MemoryMutes.
func NewMemoryMutes() *MemoryMutes {
	return &MemoryMutes{now: time.Now, m: map[domain.AccountID]map[domain.ConversationID]int64{}}
}

// Mute implements Mutes.
func (s *MemoryMutes) Mute(_ context.Context, account domain.AccountID, c domain.ConversationID, until time.Time) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	mine := s.m[account]
	if mine == nil {
		mine = map[domain.ConversationID]int64{}
		s.m[account] = mine
	}
	n := 0
	for other, u := range mine {
		switch {
		case !Muted(fromMillis(u), now):
			delete(mine, other) // ended: a mute keeps none of them
		case other != c:
			n++
		}
	}
	if n >= MaxMutes {
		return tooMany(account)
	}
	mine[c] = untilMillis(until)
	return nil
}

// Unmute implements Mutes.
func (s *MemoryMutes) Unmute(_ context.Context, account domain.AccountID, c domain.ConversationID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[account], c)
	return nil
}

// UnmuteAll implements Mutes.
func (s *MemoryMutes) UnmuteAll(_ context.Context, account domain.AccountID) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	had := len(s.m[account]) > 0
	delete(s.m, account)
	return had, nil
}

// MutedUntil implements Mutes.
func (s *MemoryMutes) MutedUntil(_ context.Context, account domain.AccountID, c domain.ConversationID) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.m[account][c]
	return fromMillis(u), ok, nil
}

// MutesOf implements Mutes.
func (s *MemoryMutes) MutesOf(_ context.Context, account domain.AccountID, now time.Time) (map[domain.ConversationID]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[domain.ConversationID]time.Time{}
	for c, u := range s.m[account] {
		if until := fromMillis(u); Muted(until, now) {
			out[c] = until
		}
	}
	return out, nil
}
