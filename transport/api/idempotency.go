package api

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
)

// (until the store holds the message) or in the store.
type idempotency struct {
	mu       sync.Mutex
	inflight map[idemKey]*call
	recent   map[idemKey]recent
}

type idemKey struct {
	account domain.AccountID
	id      string
}

type call struct {
	done chan struct{}
	ack  Ack
	err  error
}

type recent struct {
	ack Ack
	pos events.Position
	at  time.Time
}

func (i *idempotency) do(k idemKey, lookup func() (Ack, bool, error), send func() (Ack, events.Position, error)) (Ack, error) {
	for {
		i.mu.Lock()
		if c, ok := i.inflight[k]; ok {
			i.mu.Unlock()
			<-c.done
			if c.err == nil {
				ack := c.ack
				ack.Duplicate = true
				return ack, nil
			}
			continue // the first attempt failed; this one tries again
		}
		if r, ok := i.recent[k]; ok {
			i.mu.Unlock()
			ack := r.ack
			ack.Duplicate = true
			return ack, nil
		}
		c := &call{done: make(chan struct{})}
		i.inflight[k] = c
		i.mu.Unlock()

		ack, found, err := lookup()
		var pos events.Position
		if err == nil && !found {
			ack, pos, err = send()
		}
		ack.Duplicate = found
		c.ack, c.err = ack, err
		i.mu.Lock()
		delete(i.inflight, k)
		if err == nil && !found {
			i.recent[k] = recent{ack: ack, pos: pos, at: time.Now()}
		}
		i.mu.Unlock()
		close(c.done)
		return ack, err
	}
}

// Run does the service's housekeeping until ctx ends: every 5 s it
// forgets recent acks older than 5 s that the store holds (it answers for
// them from then on), so that memory holds seconds of acks, not minutes.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.SweepIdempotency(5 * time.Second)
		}
	}
}

// SweepIdempotency forgets recent acks that the store holds and that are
// older than minAge.
func (s *Service) SweepIdempotency(minAge time.Duration) {
	cutoff := time.Now().Add(-minAge)
	s.idem.mu.Lock()
	defer s.idem.mu.Unlock()
	for k, r := range s.idem.recent {
		if r.at.Before(cutoff) && s.rm.StoreProgress.Next(r.pos.Partition) > r.pos.Offset {
			delete(s.idem.recent, k)
		}
	}
}
