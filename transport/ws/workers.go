package ws

import (
	"context"
	"time"
)

// workerIdle is how long a request worker's goroutine waits for another
// run before it exits.
const workerIdle = 5 * time.Second

// workerPool runs the connections' request workers (session.work) on
// goroutines that outlive a run. A send's call path needs a 16–32 KiB
// stack, while a new goroutine starts with about what an idle
// connection's reader uses, so a goroutine per run grew, copying, its
// stack on nearly every send (4% of the server's CPU at 3,000 random
// sends/s). A goroutine that finishes a run waits workerIdle for the next
// one, then exits; after stop closes, none waits.
//
// Each goroutine keeps a context for its runs, with its cancel: a run's
// connection cancels it if it closes during the run, and the goroutine
// then takes a new one. So neither a run (nearly every send, with random
// peers) nor an idle connection makes a context of its own.
type workerPool struct {
	runs chan runFunc
	stop <-chan struct{}
}

// runFunc is a run; cancel cancels ctx, and may be called only during
// the run.
type runFunc func(ctx context.Context, cancel context.CancelFunc)

func newWorkerPool(stop <-chan struct{}) *workerPool {
	return &workerPool{runs: make(chan runFunc), stop: stop}
}

// run runs f on an idle goroutine of the pool, or on a new one if none
// is idle.
func (p *workerPool) run(f runFunc) {
	select {
	case p.runs <- f:
	default:
		go p.loop(f)
	}
}

func (p *workerPool) loop(f runFunc) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	rc := newRunContext()
	defer func() { rc.cancel() }()
	for {
		f(rc.ctx, rc.cancel)
		if rc.ctx.Err() != nil {
			rc = newRunContext()
		}
		t.Reset(workerIdle)
		select {
		case f = <-p.runs:
		case <-t.C:
			return
		case <-p.stop:
			return
		}
	}
}

// runContext is a pool goroutine's context for its runs.
type runContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newRunContext() runContext {
	ctx, cancel := context.WithCancel(context.Background())
	return runContext{ctx, cancel}
}
