package ws

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The pool runs every function given to it, reuses an idle goroutine for
// the next, and leaves no goroutine behind once stopped.
func TestWorkerPoolRunsAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	stop := make(chan struct{})
	p := newWorkerPool(stop)
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		p.run(func() { defer wg.Done(); ran.Add(1) })
	}
	wg.Wait()
	if ran.Load() != 200 {
		t.Fatalf("ran %d of 200", ran.Load())
	}
	// One at a time, the runs take the goroutines already there.
	idle := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(time.Millisecond) // let the last run's goroutine get back to waiting
		var during int
		wg.Add(1)
		p.run(func() { during = runtime.NumGoroutine(); wg.Done() })
		wg.Wait()
		if during > idle {
			t.Fatalf("a run started a goroutine (%d, with %d idle)", during-idle, idle-before)
		}
	}
	close(stop)
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after stop", runtime.NumGoroutine()-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
