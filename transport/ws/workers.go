package ws

import "time"

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
type workerPool struct {
	runs chan func()
	stop <-chan struct{}
}

func newWorkerPool(stop <-chan struct{}) *workerPool {
	return &workerPool{runs: make(chan func()), stop: stop}
}

// run runs f on an idle goroutine of the pool, or on a new one if none
// is idle.
func (p *workerPool) run(f func()) {
	select {
	case p.runs <- f:
	default:
		go p.loop(f)
	}
}

func (p *workerPool) loop(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
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
