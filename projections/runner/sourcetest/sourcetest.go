// Package sourcetest is the contract every runner.Source passes — the
// Kafka sources and Memory, the in-memory log for tests.
package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/projections/runner"
)

// Log is a log under test: a topic of Partitions partitions that the
// suite appends to and reads back through the sources of the
// implementation.
type Log interface {
	// Append writes records (name and payload; the offset is the log's)
	// to partition, in order.
	Append(t *testing.T, partition int32, recs ...runner.RawRecord)
	// Range reads every partition from from[p] (0 if absent) up to
	// to[p], or with a nil to follows them until its context ends. Nil
	// when the implementation has no such source: its cases are skipped.
	Range(t *testing.T, from, to map[int32]int64) runner.Source
	// Group reads every partition as the consumer group name, from its
	// committed position, committing each batch once the handler
	// succeeded. Nil when the implementation has no such source.
	Group(t *testing.T, name string) runner.Source
}

// Partitions is how many partitions the log under test has.
const Partitions = 3

// NewLog returns an empty log for one case.
type NewLog func(t *testing.T) Log

// record is the i-th record the suite writes to a partition.
func record(p int32, i int) runner.RawRecord {
	return runner.RawRecord{Name: "Test.v1", Payload: fmt.Appendf(nil, "p%d-%d", p, i)}
}

// collector records what a handler was given, per partition, and checks
// that a partition's batches never overlap in time.
type collector struct {
	mu      sync.Mutex
	got     map[int32][]runner.RawRecord
	busy    map[int32]*atomic.Bool
	overlap atomic.Bool
	// fail, when it returns an error for a batch, fails it.
	fail func(runner.Batch) error
}

func newCollector() *collector {
	c := &collector{got: map[int32][]runner.RawRecord{}, busy: map[int32]*atomic.Bool{}}
	for p := int32(0); p < Partitions; p++ {
		c.busy[p] = &atomic.Bool{}
	}
	return c
}

func (c *collector) handle(_ context.Context, b runner.Batch) error {
	busy := c.busy[b.Partition]
	if !busy.CompareAndSwap(false, true) {
		c.overlap.Store(true)
	}
	defer busy.Store(false)
	time.Sleep(time.Millisecond) // give an overlapping batch a chance to show
	if c.fail != nil {
		if err := c.fail(b); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[b.Partition] = append(c.got[b.Partition], b.Records...)
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, recs := range c.got {
		n += len(recs)
	}
	return n
}

// check fails unless partition p holds exactly records from..to-1, in order.
func (c *collector) check(t *testing.T, p int32, from, to int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got[p]
	if len(got) != to-from {
		t.Fatalf("partition %d: got %d records, want %d", p, len(got), to-from)
	}
	for i, r := range got {
		want := record(p, from+i)
		if r.Offset != int64(from+i) || string(r.Payload) != string(want.Payload) || r.Name != want.Name {
			t.Fatalf("partition %d, record %d: got offset %d %q %q, want offset %d %q", p, i, r.Offset, r.Name, r.Payload, from+i, want.Payload)
		}
	}
	if c.overlap.Load() {
		t.Fatalf("batches of one partition overlapped")
	}
}

func fill(t *testing.T, l Log, perPartition int) {
	for p := int32(0); p < Partitions; p++ {
		recs := make([]runner.RawRecord, perPartition)
		for i := range recs {
			recs[i] = record(p, i)
		}
		l.Append(t, p, recs...)
	}
}

func consumeAsync(ctx context.Context, s runner.Source, h runner.Handler) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Consume(ctx, h) }()
	return ch
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run runs the contract against logs made by newLog.
func Run(t *testing.T, newLog NewLog) {
	rangeSource := func(t *testing.T, l Log, from, to map[int32]int64) runner.Source {
		s := l.Range(t, from, to)
		if s == nil {
			t.Skip("no range source")
		}
		return s
	}
	groupSource := func(t *testing.T, l Log, name string) runner.Source {
		s := l.Group(t, name)
		if s == nil {
			t.Skip("no group source")
		}
		return s
	}
	t.Run("a bounded range delivers exactly its records, in order", func(t *testing.T) {
		l := newLog(t)
		fill(t, l, 10)
		c := newCollector()
		from := map[int32]int64{0: 0, 1: 4, 2: 9}
		to := map[int32]int64{0: 10, 1: 7, 2: 9}
		if err := rangeSource(t, l, from, to).Consume(t.Context(), c.handle); err != nil {
			t.Fatal(err)
		}
		c.check(t, 0, 0, 10)
		c.check(t, 1, 4, 7)
		c.check(t, 2, 9, 9)
	})

	t.Run("a bounded range stopped by its context returns the context's error", func(t *testing.T) {
		// A caller must not take a range cut short for a range read
		// through (a replay would record progress it never made).
		l := newLog(t)
		fill(t, l, 10)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stopped := func(context.Context, runner.Batch) error { cancel(); return nil }
		err := rangeSource(t, l, map[int32]int64{0: 0, 1: 0, 2: 0}, map[int32]int64{0: 10, 1: 10, 2: 10}).Consume(ctx, stopped)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Consume returned %v, want context.Canceled", err)
		}
	})

	t.Run("a following range delivers what is appended, until its context ends", func(t *testing.T) {
		l := newLog(t)
		fill(t, l, 2)
		c := newCollector()
		ctx, cancel := context.WithCancel(t.Context())
		ch := consumeAsync(ctx, rangeSource(t, l, map[int32]int64{0: 1, 1: 0, 2: 0}, nil), c.handle)
		eventually(t, "the records written before", func() bool { return c.count() == 5 })
		for p := int32(0); p < Partitions; p++ {
			l.Append(t, p, record(p, 2), record(p, 3))
		}
		eventually(t, "the records appended", func() bool { return c.count() == 11 })
		cancel()
		select {
		case err := <-ch:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("Consume after cancel: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Consume did not return after its context ended")
		}
		c.check(t, 0, 1, 4)
		c.check(t, 1, 0, 4)
	})

	t.Run("a failed batch stops the source with its error", func(t *testing.T) {
		l := newLog(t)
		fill(t, l, 10)
		boom := errors.New("boom")
		c := newCollector()
		c.fail = func(b runner.Batch) error {
			if b.Partition == 1 && b.Records[len(b.Records)-1].Offset >= 5 {
				return boom
			}
			return nil
		}
		err := rangeSource(t, l, map[int32]int64{0: 0, 1: 0, 2: 0}, nil).Consume(t.Context(), c.handle)
		if !errors.Is(err, boom) {
			t.Fatalf("Consume returned %v, want the handler's error", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range c.got[1] {
			if r.Offset >= 5 {
				t.Fatalf("partition 1 delivered offset %d after the failed batch", r.Offset)
			}
		}
	})

	t.Run("a group resumes after its last successful batch", func(t *testing.T) {
		l := newLog(t)
		fill(t, l, 10)
		boom := errors.New("boom")
		first := newCollector()
		failed := atomic.Int64{}
		failed.Store(-1)
		first.fail = func(b runner.Batch) error {
			if b.Partition == 2 && b.Records[len(b.Records)-1].Offset >= 6 {
				failed.Store(b.Records[0].Offset)
				return boom
			}
			return nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		ch := consumeAsync(ctx, groupSource(t, l, "resume"), first.handle)
		var err error
		select {
		case err = <-ch:
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatal("a group whose handler failed did not stop")
		}
		cancel()
		if !errors.Is(err, boom) {
			t.Fatalf("Consume returned %v, want the handler's error", err)
		}
		second := newCollector()
		ctx2, cancel2 := context.WithCancel(t.Context())
		defer cancel2()
		ch2 := consumeAsync(ctx2, groupSource(t, l, "resume"), second.handle)
		// Partition 2 comes again from the failed batch (at the latest);
		// nothing is skipped.
		eventually(t, "partition 2 after the restart", func() bool {
			second.mu.Lock()
			defer second.mu.Unlock()
			got := second.got[2]
			return len(got) > 0 && got[len(got)-1].Offset == 9
		})
		second.mu.Lock()
		firstAgain := second.got[2][0].Offset
		second.mu.Unlock()
		if firstAgain > failed.Load() {
			t.Fatalf("after the failure at offset %d, the group resumed at %d", failed.Load(), firstAgain)
		}
		cancel2()
		<-ch2
	})

	t.Run("groups are apart", func(t *testing.T) {
		l := newLog(t)
		fill(t, l, 4)
		for _, name := range []string{"apart-a", "apart-b"} {
			c := newCollector()
			ctx, cancel := context.WithCancel(t.Context())
			ch := consumeAsync(ctx, groupSource(t, l, name), c.handle)
			eventually(t, name+" reads everything", func() bool { return c.count() == 4*Partitions })
			cancel()
			<-ch
		}
	})
}

// CPUTime is the CPU time the process has used, in user and system mode,
// for benchmarks of a reader: unlike the wall clock, it does not count
// time spent waiting for a core that other work holds.
func CPUTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
