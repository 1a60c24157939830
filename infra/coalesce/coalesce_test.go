package coalesce_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/coalesce"
)

// Every caller gets the answer to its own request, however the requests
// of concurrent callers were batched, and no run exceeds MaxBatch or
// MaxRuns.
func TestEveryCallerGetsItsOwnAnswer(t *testing.T) {
	const callers, maxBatch, maxRuns = 500, 7, 3
	var inFlight, maxInFlight, largest atomic.Int64
	release := make(chan struct{})
	c := coalesce.New(coalesce.Config{MaxBatch: maxBatch, MaxRuns: maxRuns}, func(_ context.Context, reqs []int) ([]int, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		for l := largest.Load(); int64(len(reqs)) > l && !largest.CompareAndSwap(l, int64(len(reqs))); l = largest.Load() {
		}
		<-release
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * r
		}
		return out, nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			got, err := c.Do(context.Background(), i)
			if err != nil || got != i*i {
				errs <- errors.New("wrong answer")
			}
		})
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m := maxInFlight.Load(); m > maxRuns {
		t.Errorf("%d runs in flight at once, want at most %d", m, maxRuns)
	}
	if l := largest.Load(); l > maxBatch {
		t.Errorf("a run of %d requests, want at most %d", l, maxBatch)
	}
}

// A run's error reaches every caller of the batch, and a run that answers
// the wrong number of requests is an error, not a wrong answer.
func TestRunErrorsReachTheCallers(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		run  coalesce.Run[int, int]
	}{
		{"run fails", func(context.Context, []int) ([]int, error) { return nil, boom }},
		{"run answers too few", func(_ context.Context, reqs []int) ([]int, error) { return make([]int, len(reqs)-1), nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := coalesce.New(coalesce.Config{}, tc.run)
			if _, err := c.Do(context.Background(), 1); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// A caller that gives up before its request is sent takes the request
// with it: the run never sees it.
func TestAbandonedRequestIsNotSent(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []int
	c := coalesce.New(coalesce.Config{MaxRuns: 1}, func(_ context.Context, reqs []int) ([]int, error) {
		mu.Lock()
		seen = append(seen, reqs...)
		mu.Unlock()
		if reqs[0] == 1 {
			close(entered)
			<-release
		}
		return make([]int, len(reqs)), nil
	})
	first := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), 1)
		first <- err
	}()
	<-entered
	// The only run is busy with 1: 2 queues, and its caller gives up.
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, 2)
		second <- err
	}()
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned call: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// A later call runs after the queue drained past 2.
	if _, err := c.Do(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range seen {
		if r == 2 {
			t.Fatalf("the abandoned request was sent: runs saw %v", seen)
		}
	}
}

// With Settle, a caller whose context ends while its request is in a run
// returns only once that run has ended, with the run's answer; and the
// run's context ends once every caller's has.
func TestSettleWaitsForTheRunItsCallersLeft(t *testing.T) {
	entered := make(chan struct{})
	var ended atomic.Bool
	c := coalesce.New(coalesce.Config{MaxRuns: 1, Settle: true}, func(ctx context.Context, reqs []int) ([]int, error) {
		close(entered)
		<-ctx.Done() // ends once the only caller has left
		time.Sleep(20 * time.Millisecond)
		ended.Store(true)
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, 1)
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want the run's context.Canceled", err)
	}
	if !ended.Load() {
		t.Fatal("Do returned before its run had ended")
	}
}

// With Settle, a run goes on while any of its callers still waits, and a
// caller that left meanwhile gets the run's answer once it has ended.
func TestSettleKeepsTheRunForTheCallersThatWait(t *testing.T) {
	first, release := make(chan struct{}), make(chan struct{})
	second, finish := make(chan struct{}), make(chan struct{})
	cancelled := make(chan bool, 1)
	c := coalesce.New(coalesce.Config{MaxRuns: 1, Settle: true}, func(ctx context.Context, reqs []int) ([]int, error) {
		if reqs[0] == 0 {
			close(first)
			<-release
			return make([]int, len(reqs)), nil
		}
		close(second)
		<-finish
		cancelled <- ctx.Err() != nil
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 10
		}
		return out, nil
	})
	go func() { _, _ = c.Do(context.Background(), 0) }()
	<-first
	// The only run is busy: 1 and 2 queue and go out together next.
	leaving, leave := context.WithCancel(context.Background())
	got1, got2 := make(chan int, 1), make(chan int, 1)
	go func() {
		a, err := c.Do(leaving, 1)
		if err != nil {
			t.Errorf("the caller that left: %v, want the run's answer", err)
		}
		got1 <- a
	}()
	go func() {
		a, _ := c.Do(context.Background(), 2)
		got2 <- a
	}()
	for coalesce.Queued(c) < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-second
	leave()
	select {
	case <-got1:
		t.Fatal("a caller in a run returned before the run had ended")
	case <-time.After(50 * time.Millisecond):
	}
	close(finish)
	if a, b := <-got1, <-got2; a != 10 || b != 20 {
		t.Errorf("answers %d, %d; want 10, 20", a, b)
	}
	if <-cancelled {
		t.Error("the run's context ended while a caller still waited")
	}
}
