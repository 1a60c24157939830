package store

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/domain"
)

// GroupCommit is a Store whose Saves from concurrent callers share one
// write. The projection applies one record per partition at a time and must
// not acknowledge a record before it is stored, so it cannot batch within a
// partition; it can batch across partitions: while one write is in flight,
// the Saves of the other partitions queue up and go out together in the
// next, one round trip and one commit for all of them. Each Save still
// returns only once its messages are written.
type GroupCommit struct {
	Store

	mu      sync.Mutex
	queue   []domain.Message
	waiters []chan error
	writing bool
	// MaxBatch bounds the messages in one write.
	maxBatch int
}

// NewGroupCommit wraps s. maxBatch bounds one write (default 1000).
func NewGroupCommit(s Store, maxBatch int) *GroupCommit {
	if maxBatch <= 0 {
		maxBatch = 1000
	}
	return &GroupCommit{Store: s, maxBatch: maxBatch}
}

// Save implements Store.
func (g *GroupCommit) Save(ctx context.Context, msgs ...domain.Message) error {
	done := make(chan error, 1)
	g.mu.Lock()
	g.queue = append(g.queue, msgs...)
	g.waiters = append(g.waiters, done)
	if !g.writing {
		g.writing = true
		go g.write()
	}
	g.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The messages may still be written; the projection retries, and
		// saving is idempotent.
		return ctx.Err()
	}
}

// write drains the queue batch by batch until it is empty.
func (g *GroupCommit) write() {
	for {
		g.mu.Lock()
		if len(g.waiters) == 0 {
			g.writing = false
			g.mu.Unlock()
			return
		}
		batch, waiters := g.queue, g.waiters
		g.queue, g.waiters = nil, nil
		g.mu.Unlock()
		var err error
		for len(batch) > 0 && err == nil {
			n := min(len(batch), g.maxBatch)
			err = g.Store.Save(context.Background(), batch[:n]...)
			batch = batch[n:]
		}
		for _, w := range waiters {
			w <- err
		}
	}
}
