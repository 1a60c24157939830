// Package projections turns the event log into read models. Each projection
// is a Watermill handler with a stable name (its consumer group when
// durable); every handler is idempotent, so replaying any part of the log
// changes nothing (I4). Progress records, per partition, how far a read
// model has applied the log, so a reader can wait until a read model holds
// everything that was acknowledged before it asked (I3).
package projections

import (
	"context"
	"fmt"
	"sync"
)

// Tracker records how far a read model has applied each partition, and lets
// readers wait for it. Advance is called only after a record is applied, so
// a tracker may lag its read model but never lead it. Progress is the
// in-memory tracker; a durable read model keeps its tracker beside its data
// so that readers in other processes see it.
type Tracker interface {
	// Advance records that the record at offset of partition is applied.
	Advance(partition int32, offset int64)
	// Next is the offset after the last applied one of partition.
	Next(partition int32) int64
	// WaitFor returns once every record of partition below end is applied.
	WaitFor(ctx context.Context, partition int32, end int64) error
	// WaitForAll is WaitFor for every partition in ends.
	WaitForAll(ctx context.Context, ends map[int32]int64) error
}

// Progress is the in-memory Tracker.
type Progress struct {
	mu      sync.Mutex
	next    map[int32]int64 // next offset to apply
	waiters map[int32][]waiter
}

type waiter struct {
	offset int64
	ch     chan struct{}
}

// NewProgress starts with nothing applied.
func NewProgress() *Progress {
	return &Progress{next: map[int32]int64{}, waiters: map[int32][]waiter{}}
}

// Advance records that the record at offset of partition is applied.
func (p *Progress) Advance(partition int32, offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset+1 <= p.next[partition] {
		return
	}
	p.next[partition] = offset + 1
	ws := p.waiters[partition]
	if len(ws) == 0 {
		return
	}
	kept := ws[:0]
	for _, w := range ws {
		if w.offset <= offset {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	p.waiters[partition] = kept
}

// Next is the offset after the last applied one of partition.
func (p *Progress) Next(partition int32) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next[partition]
}

// WaitFor returns once every record of partition below end is applied, or
// with the context's error.
func (p *Progress) WaitFor(ctx context.Context, partition int32, end int64) error {
	p.mu.Lock()
	if p.next[partition] >= end {
		p.mu.Unlock()
		return nil
	}
	w := waiter{offset: end - 1, ch: make(chan struct{})}
	p.waiters[partition] = append(p.waiters[partition], w)
	p.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		ws := p.waiters[partition]
		for i := range ws {
			if ws[i].ch == w.ch {
				p.waiters[partition] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		return fmt.Errorf("cannot wait for partition %d to reach offset %d: %w", partition, end, ctx.Err())
	}
}

// WaitForAll is WaitFor for every partition in ends.
func (p *Progress) WaitForAll(ctx context.Context, ends map[int32]int64) error {
	for part, end := range ends {
		if err := p.WaitFor(ctx, part, end); err != nil {
			return err
		}
	}
	return nil
}
