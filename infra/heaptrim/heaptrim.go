// Package heaptrim gives the memory a quiet process holds beyond its live
// heap back to the system.
//
// Parley collects garbage rarely (--gc-percent 400 by default, bounded by
// --memory-limit): under load that halves its tail latency, but it also
// means that the heap grows toward the limit and stays there. Go's own
// scavenger returns only what lies above the collector's goal, and with
// these settings the goal is the limit. A node that goes quiet after a
// burst — thousands of connections that said hello and now idle — would
// keep the burst's garbage and free pages resident for good: at 19,000
// idle connections that was 3 to 4 KB a connection on top of what the
// connections hold.
//
// A Trimmer looks at the heap periodically and, when the spare memory
// (the heap allocated since the last collection beyond what was live at
// it, plus free pages not yet returned) would last several periods at the
// rate the process allocates now, collects and returns it
// (debug.FreeOSMemory). A busy process allocates its spare memory many
// times over in a period and is never trimmed; a quiet one is trimmed once
// and then only when enough garbage has built up again.
package heaptrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config tunes a Trimmer.
type Config struct {
	// Every is how often the heap is looked at. Default 10 s.
	Every time.Duration
	// MinSpareBytes is the least spare memory worth a collection.
	// Default 16 MiB.
	MinSpareBytes uint64
	// Periods is how many periods at the present allocation rate the
	// spare memory must last for the process to count as quiet. Default 2.
	Periods uint64
	// Logger receives a debug line per trim. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Every <= 0 {
		c.Every = 10 * time.Second
	}
	if c.MinSpareBytes == 0 {
		c.MinSpareBytes = 16 << 20
	}
	if c.Periods == 0 {
		c.Periods = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Heap is what a Trimmer reads of the runtime's heap.
type Heap struct {
	// Allocated is every byte allocated on the heap so far.
	Allocated uint64
	// Objects is the heap's objects now, garbage not yet collected included.
	Objects uint64
	// Live is the heap that the last collection found live.
	Live uint64
	// Free is free heap memory the runtime has not returned yet.
	Free uint64
}

// Spare is the memory a collection and return would give back: the objects
// allocated beyond what was live at the last collection (as much garbage
// as the heap can hold without a collection finding it), and the free
// pages.
func (h Heap) Spare() uint64 {
	s := h.Free
	if h.Objects > h.Live {
		s += h.Objects - h.Live
	}
	return s
}

// ReadHeap reads the runtime's heap.
func ReadHeap() Heap {
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return Heap{Allocated: u(0), Objects: u(1), Live: u(2), Free: u(3)}
}

// Worth reports whether the heap now, with allocated bytes allocated over
// the last period, should be trimmed: its spare memory is at least min and
// would last periods periods at that rate.
func Worth(now Heap, allocated, min, periods uint64) bool {
	spare := now.Spare()
	return spare >= min && spare >= periods*allocated
}

// Trimmer trims the process's heap when it is quiet.
type Trimmer struct {
	cfg  Config
	read func() Heap
	free func()
	last Heap
	seen bool
}

// New returns a Trimmer of this process's heap.
func New(cfg Config) *Trimmer {
	cfg.setDefaults()
	return &Trimmer{cfg: cfg, read: ReadHeap, free: debug.FreeOSMemory}
}

// Check looks at the heap once and trims it if it is worth it; it reports
// whether it did. The first check only takes the allocation count it
// measures the next period from.
func (t *Trimmer) Check() bool {
	now := t.read()
	prev, seen := t.last, t.seen
	t.last, t.seen = now, true
	if !seen || now.Allocated < prev.Allocated {
		return false
	}
	if !Worth(now, now.Allocated-prev.Allocated, t.cfg.MinSpareBytes, t.cfg.Periods) {
		return false
	}
	start := time.Now()
	t.free()
	after := t.read()
	t.last = after
	t.cfg.Logger.Debug("returned spare heap memory to the system", "spare_bytes", now.Spare(), "allocated_bytes", now.Allocated-prev.Allocated, "took", time.Since(start))
	return true
}

// Run checks every cfg.Every until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	tick := time.NewTicker(t.cfg.Every)
	defer tick.Stop()
	t.Check()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Check()
		}
	}
}
