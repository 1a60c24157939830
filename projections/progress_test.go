package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/projections"
)

// waitAsync runs WaitFor in a goroutine and returns its result channel.
func waitAsync(ctx context.Context, p *projections.Progress, part int32, end int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.WaitFor(ctx, part, end) }()
	return ch
}

// notDone fails if ch delivers within a short grace period. It cannot prove
// that a waiter would never return, only that it has not yet.
func notDone(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	case <-time.After(20 * time.Millisecond):
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

func TestProgressAdvanceAndNext(t *testing.T) {
	tests := []struct {
		name     string
		advances [][2]int64 // partition, offset
		want     map[int32]int64
	}{
		{"nothing applied", nil, map[int32]int64{0: 0, 7: 0}},
		{"one record", [][2]int64{{0, 0}}, map[int32]int64{0: 1, 1: 0}},
		{"in order", [][2]int64{{0, 0}, {0, 1}, {0, 2}}, map[int32]int64{0: 3}},
		{"a gap is fine (compacted or skipped offsets)", [][2]int64{{0, 0}, {0, 9}}, map[int32]int64{0: 10}},
		{"never moves back", [][2]int64{{0, 5}, {0, 2}, {0, 5}}, map[int32]int64{0: 6}},
		{"partitions are independent", [][2]int64{{0, 3}, {1, 10}, {2, 0}}, map[int32]int64{0: 4, 1: 11, 2: 1, 3: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := projections.NewProgress()
			for _, a := range tt.advances {
				p.Advance(int32(a[0]), a[1])
			}
			for part, want := range tt.want {
				if got := p.Next(part); got != want {
					t.Errorf("Next(%d) = %d, want %d", part, got, want)
				}
			}
		})
	}
}

func TestProgressWaitForReturnsAtOnceWhenApplied(t *testing.T) {
	p := projections.NewProgress()
	p.Advance(3, 4) // next = 5
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already applied: no need to wait, even with a dead context
	for _, end := range []int64{-1, 0, 1, 5} {
		if err := p.WaitFor(ctx, 3, end); err != nil {
			t.Errorf("WaitFor(end %d) with next 5 = %v, want nil", end, err)
		}
	}
	if err := p.WaitFor(ctx, 3, 6); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor(end 6) with next 5 and a cancelled context = %v, want context.Canceled", err)
	}
}

func TestProgressWaitForWakesOnAdvance(t *testing.T) {
	p := projections.NewProgress()
	ctx := context.Background()
	w3 := waitAsync(ctx, p, 0, 3)   // needs offsets 0..2
	w10 := waitAsync(ctx, p, 0, 10) // needs offsets 0..9
	other := waitAsync(ctx, p, 1, 1)

	notDone(t, w3, "WaitFor(0, 3)")
	p.Advance(0, 1)
	notDone(t, w3, "WaitFor(0, 3) after offset 1")
	p.Advance(0, 2)
	if err := done(t, w3, "WaitFor(0, 3) after offset 2"); err != nil {
		t.Fatalf("WaitFor(0, 3) = %v", err)
	}
	notDone(t, w10, "WaitFor(0, 10) after offset 2")
	notDone(t, other, "WaitFor on partition 1 after advancing partition 0")
	p.Advance(0, 20)
	if err := done(t, w10, "WaitFor(0, 10)"); err != nil {
		t.Fatalf("WaitFor(0, 10) = %v", err)
	}
	p.Advance(1, 0)
	if err := done(t, other, "WaitFor(1, 1)"); err != nil {
		t.Fatalf("WaitFor(1, 1) = %v", err)
	}
}

func TestProgressWaitForContextCancel(t *testing.T) {
	p := projections.NewProgress()
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := waitAsync(ctx, p, 0, 5)
	survivor := waitAsync(context.Background(), p, 0, 5)
	notDone(t, cancelled, "WaitFor before cancel")
	cancel()
	err := done(t, cancelled, "WaitFor after cancel")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor after cancel = %v, want context.Canceled", err)
	}
	// The other waiter on the same partition is not disturbed by the
	// cancelled one leaving, and still wakes.
	notDone(t, survivor, "the other waiter")
	p.Advance(0, 4)
	if err := done(t, survivor, "the other waiter after advance"); err != nil {
		t.Fatalf("the other waiter = %v", err)
	}
}

func TestProgressWaitForDeadline(t *testing.T) {
	p := projections.NewProgress()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.WaitFor(ctx, 2, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor = %v, want context.DeadlineExceeded", err)
	}
	// Advancing after a waiter gave up does not panic (its channel must not
	// be closed twice or after removal) and later waits still work.
	p.Advance(2, 0)
	if err := p.WaitFor(context.Background(), 2, 1); err != nil {
		t.Fatalf("WaitFor after advance = %v", err)
	}
}

func TestProgressWaitForAll(t *testing.T) {
	p := projections.NewProgress()
	ctx := context.Background()

	if err := p.WaitForAll(ctx, nil); err != nil {
		t.Fatalf("WaitForAll(nil) = %v", err)
	}
	ends := map[int32]int64{0: 2, 1: 1, 5: 3}
	ch := make(chan error, 1)
	go func() { ch <- p.WaitForAll(ctx, ends) }()

	p.Advance(0, 1)
	p.Advance(5, 2)
	notDone(t, ch, "WaitForAll with partition 1 behind")
	p.Advance(1, 0)
	if err := done(t, ch, "WaitForAll"); err != nil {
		t.Fatalf("WaitForAll = %v", err)
	}

	ctx2, cancel := context.WithCancel(ctx)
	ch2 := make(chan error, 1)
	go func() { ch2 <- p.WaitForAll(ctx2, map[int32]int64{0: 2, 9: 1}) }()
	notDone(t, ch2, "WaitForAll with partition 9 behind")
	cancel()
	if err := done(t, ch2, "WaitForAll after cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitForAll after cancel = %v, want context.Canceled", err)
	}
}

// Many waiters and advancers at once: run with -race.
func TestProgressConcurrent(t *testing.T) {
	p := projections.NewProgress()
	const parts, n = 4, 200
	errs := make(chan error, parts*n)
	for part := int32(0); part < parts; part++ {
		for end := int64(1); end <= n; end++ {
			go func(part int32, end int64) { errs <- p.WaitFor(context.Background(), part, end) }(part, end)
		}
	}
	for part := int32(0); part < parts; part++ {
		go func(part int32) {
			for off := int64(0); off < n; off++ {
				p.Advance(part, off)
			}
		}(part)
	}
	for i := 0; i < parts*n; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("WaitFor = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d waiters returned", i, parts*n)
		}
	}
	for part := int32(0); part < parts; part++ {
		if got := p.Next(part); got != n {
			t.Errorf("Next(%d) = %d, want %d", part, got, n)
		}
	}
}
