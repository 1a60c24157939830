// Package coalesce runs the requests of concurrent callers together: while
// one round trip to a server is in flight, the requests that arrive queue
// up and go out in the next, as one pipeline or one query. A caller alone
// goes out at once (nothing waits to fill a batch), so batching costs no
// latency at low load and saves a round trip, a connection and the
// syscalls of each request at high load — where a pool of connections
// would otherwise queue the callers one round trip each.
package coalesce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config bounds a Coalescer.
type Config struct {
	// MaxBatch is the most requests one run takes. Default 256.
	MaxBatch int
	// MaxRuns is the most runs in flight at once (each holds one
	// connection). Default 2.
	MaxRuns int
	// Settle makes a request in a run settle before its caller goes on:
	// once its request is in a run, Do returns only when that run has
	// ended, even if ctx ends first, and the run's context ends once
	// every one of its callers' contexts has. So when Do returns, the
	// request has taken effect or never will — what a caller needs that
	// hands its work to someone else when its context ends (a projection
	// whose partition moves to another process at a rebalance). A request
	// not yet in a run when ctx ends is never sent, as without Settle.
	Settle bool
}

func (c *Config) setDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.MaxRuns <= 0 {
		c.MaxRuns = 2
	}
}

// Run answers a batch of requests: one answer per request, in order, or
// one error for them all. ctx ends at the latest deadline of the batch's
// callers.
type Run[Q, A any] func(ctx context.Context, reqs []Q) ([]A, error)

// Coalescer batches the requests of concurrent Do calls into runs.
type Coalescer[Q, A any] struct {
	run Run[Q, A]
	cfg Config

	mu      sync.Mutex
	queue   []*call[Q, A]
	running int
}

// New returns a Coalescer that answers requests with run.
func New[Q, A any](cfg Config, run Run[Q, A]) *Coalescer[Q, A] {
	cfg.setDefaults()
	return &Coalescer[Q, A]{run: run, cfg: cfg}
}

// States of a call.
const (
	queued int32 = iota
	taken
	abandoned
)

type call[Q, A any] struct {
	req      Q
	ctx      context.Context // with Settle: the caller's, which ends the run's
	deadline time.Time       // zero: none
	state    atomic.Int32
	ans      A
	err      error
	done     chan struct{}
}

// Do queues req and returns its answer. When ctx ends first, Do returns
// ctx's error; a request not yet sent is then never sent, one already
// sent may still take effect (as when a context ends during a single
// command).
func (c *Coalescer[Q, A]) Do(ctx context.Context, req Q) (A, error) {
	var zero A
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	cl := &call[Q, A]{req: req, done: make(chan struct{})}
	cl.deadline, _ = ctx.Deadline()
	if c.cfg.Settle {
		cl.ctx = ctx
	}
	c.mu.Lock()
	c.queue = append(c.queue, cl)
	if c.running < c.cfg.MaxRuns {
		c.running++
		// The runner exits as soon as the queue is empty, so it lives
		// no longer than the requests it answers.
		go c.drain()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.ans, cl.err
	case <-ctx.Done():
		if !cl.state.CompareAndSwap(queued, abandoned) && c.cfg.Settle {
			<-cl.done // in a run: wait until it has settled
			return cl.ans, cl.err
		}
		return zero, ctx.Err()
	}
}

// drain runs batches until the queue is empty.
func (c *Coalescer[Q, A]) drain() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running--
			c.mu.Unlock()
			return
		}
		n := min(len(c.queue), c.cfg.MaxBatch)
		batch := make([]*call[Q, A], n)
		copy(batch, c.queue)
		rest := copy(c.queue, c.queue[n:])
		clear(c.queue[rest:])
		c.queue = c.queue[:rest]
		c.mu.Unlock()
		c.exec(batch)
	}
}

// exec runs the batch's requests whose callers still wait.
func (c *Coalescer[Q, A]) exec(batch []*call[Q, A]) {
	live := batch[:0]
	var deadline time.Time
	bounded := true
	for _, cl := range batch {
		if !cl.state.CompareAndSwap(queued, taken) {
			continue
		}
		live = append(live, cl)
		if cl.deadline.IsZero() {
			bounded = false
		} else if cl.deadline.After(deadline) {
			deadline = cl.deadline
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if bounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	if c.cfg.Settle {
		ctx, cancel = settled(ctx, cancel, live)
	}
	reqs := make([]Q, len(live))
	for i, cl := range live {
		reqs[i] = cl.req
	}
	ans, err := c.run(ctx, reqs)
	cancel()
	if err == nil && len(ans) != len(live) {
		err = fmt.Errorf("coalesce: a run answered %d of %d requests", len(ans), len(live))
	}
	for i, cl := range live {
		if err != nil {
			cl.err = err
		} else {
			cl.ans = ans[i]
		}
		close(cl.done)
	}
}

// settled returns ctx, ended also once every caller of live has seen its
// own context end, and the cancel that releases it all.
func settled[Q, A any](ctx context.Context, cancel context.CancelFunc, live []*call[Q, A]) (context.Context, context.CancelFunc) {
	ctx, stop := context.WithCancel(ctx)
	left := atomic.Int64{}
	left.Store(int64(len(live)))
	stops := make([]func() bool, len(live))
	for i, cl := range live {
		stops[i] = context.AfterFunc(cl.ctx, func() {
			if left.Add(-1) == 0 {
				stop()
			}
		})
	}
	return ctx, func() {
		for _, s := range stops {
			s()
		}
		stop()
		cancel()
	}
}
