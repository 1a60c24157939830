package ws

import (
	"context"
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
		p.run(func(context.Context, context.CancelFunc) { defer wg.Done(); ran.Add(1) })
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
		p.run(func(context.Context, context.CancelFunc) { during = runtime.NumGoroutine(); wg.Done() })
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

// A run gets a live context, whether or not the run before it on the
// same goroutine cancelled its own; one that did not cancel passes its
// context on.
func TestWorkerPoolContextOutlivesACancel(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	p := newWorkerPool(stop)
	got := make(chan context.Context, 1)
	next := func(f func(context.Context, context.CancelFunc)) context.Context {
		t.Helper()
		time.Sleep(time.Millisecond) // let the goroutine get back to waiting
		p.run(func(ctx context.Context, cancel context.CancelFunc) {
			if ctx.Err() != nil {
				t.Error("a run got a cancelled context")
			}
			f(ctx, cancel)
			got <- ctx
		})
		return <-got
	}
	first := next(func(context.Context, context.CancelFunc) {})
	if second := next(func(_ context.Context, cancel context.CancelFunc) { cancel() }); second != first {
		t.Fatal("a run that cancelled nothing did not pass its context on")
	}
	if third := next(func(context.Context, context.CancelFunc) {}); third == first {
		t.Fatal("a cancelled context was handed to the next run")
	}
}
