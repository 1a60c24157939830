// Package progresstest is the contract every progress backend passes: the
// same cases run on a memory-only tracker, PostgreSQL and Redis.
package progresstest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/projections/progress"
)

// Open returns the backend of the read model called name, as one process
// would open it; opening one name twice gives two processes that share
// the stored progress. A memory-only suite returns nil.
type Open func(t *testing.T, name string) progress.Backend

// Run runs the contract against open.
func Run(t *testing.T, open Open) {
	newTracker := func(t *testing.T, name string) *progress.Tracker {
		t.Helper()
		tr, err := progress.New(t.Context(), open(t, name), progress.Config{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	shared := open(t, "probe") != nil

	t.Run("advance and next", func(t *testing.T) {
		tests := []struct {
			name    string
			advance [][2]int64 // partition, offset
			want    map[int32]int64
		}{
			{"nothing applied", nil, map[int32]int64{0: 0}},
			{"in order", [][2]int64{{0, 0}, {0, 1}, {0, 2}}, map[int32]int64{0: 3}},
			{"never backwards", [][2]int64{{0, 5}, {0, 2}}, map[int32]int64{0: 6}},
			{"partitions apart", [][2]int64{{0, 4}, {3, 9}}, map[int32]int64{0: 5, 1: 0, 3: 10}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tr := newTracker(t, "next-"+tc.name)
				for _, a := range tc.advance {
					tr.Advance(int32(a[0]), a[1])
				}
				for part, want := range tc.want {
					if got := tr.Next(part); got != want {
						t.Errorf("Next(%d) = %d, want %d", part, got, want)
					}
				}
			})
		}
	})

	t.Run("wait returns at once when applied", func(t *testing.T) {
		tr := newTracker(t, "at-once")
		tr.Advance(1, 9)
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()
		if err := tr.WaitForAll(ctx, map[int32]int64{1: 10, 2: 0}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("wait wakes on advance", func(t *testing.T) {
		tr := newTracker(t, "wakes")
		ch := waitAsync(t.Context(), tr, map[int32]int64{0: 3, 1: 1})
		tr.Advance(0, 2)
		notDone(t, ch, "a wait for partition 1")
		tr.Advance(1, 0)
		if err := done(t, ch, "the wait"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("wait gives up with the context", func(t *testing.T) {
		tr := newTracker(t, "gives-up")
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		err := tr.WaitFor(ctx, 0, 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want deadline exceeded", err)
		}
	})

	t.Run("close ends waits", func(t *testing.T) {
		tr := newTracker(t, "close")
		ch := waitAsync(t.Context(), tr, map[int32]int64{0: 1})
		notDone(t, ch, "a wait")
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := done(t, ch, "the wait"); !errors.Is(err, progress.ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := tr.WaitFor(t.Context(), 0, 1); !errors.Is(err, progress.ErrClosed) {
			t.Fatalf("a wait after Close: %v, want ErrClosed", err)
		}
	})

	t.Run("concurrent advances and waits", func(t *testing.T) {
		tr := newTracker(t, "concurrent")
		var wg sync.WaitGroup
		for part := int32(0); part < 4; part++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for off := int64(0); off < 200; off++ {
					tr.Advance(part, off)
				}
			}()
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				if err := tr.WaitFor(ctx, part, 200); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	})

	if !shared {
		return
	}

	t.Run("a wait in another process sees the progress", func(t *testing.T) {
		projector, gateway := newTracker(t, "across"), newTracker(t, "across")
		ch := waitAsync(t.Context(), gateway, map[int32]int64{0: 5, 2: 1})
		notDone(t, ch, "the gateway's wait")
		projector.Advance(0, 4)
		projector.Advance(2, 0)
		if err := done(t, ch, "the gateway's wait"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a new process starts from the stored progress", func(t *testing.T) {
		first := newTracker(t, "restart")
		first.Advance(3, 41)
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		second := newTracker(t, "restart")
		if got := second.Next(3); got != 42 {
			t.Fatalf("Next(3) after a restart = %d, want 42", got)
		}
	})

	t.Run("stored progress never moves backwards", func(t *testing.T) {
		ahead, behind := newTracker(t, "backwards"), newTracker(t, "backwards")
		ahead.Advance(0, 9)
		if err := ahead.Close(); err != nil {
			t.Fatal(err)
		}
		behind.Advance(0, 4)
		if err := behind.Close(); err != nil {
			t.Fatal(err)
		}
		if got := newTracker(t, "backwards").Next(0); got != 10 {
			t.Fatalf("stored progress %d, want 10", got)
		}
		if got := behind.Next(0); got != 10 {
			t.Errorf("the writer that was behind thinks %d, want 10 (it learns what is stored)", got)
		}
	})

	t.Run("read models are apart", func(t *testing.T) {
		a := newTracker(t, "apart-a")
		a.Advance(0, 99)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if got := newTracker(t, "apart-b").Next(0); got != 0 {
			t.Fatalf("another read model's progress leaks: %d", got)
		}
	})
}

func waitAsync(ctx context.Context, tr *progress.Tracker, ends map[int32]int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- tr.WaitForAll(ctx, ends) }()
	return ch
}

// notDone fails if ch delivers within a grace period of several polls. It
// cannot prove that a waiter would never return, only that it has not yet.
func notDone(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func done(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}
