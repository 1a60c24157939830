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
// A Trimmer looks at the heap periodically. A process is quiet when a
// period allocates little against the heap it keeps live (at most
// 1/Config.Share of it: with the defaults, a node with 80 MB live allocating
// under 1 MB a second); a quiet process that holds enough spare memory
// (the heap allocated since the last collection beyond what was live at
// it, plus free pages not yet returned) is collected and the spare
// returned (debug.FreeOSMemory). A node with the usual live heap (80–160
// MB) that carries a hundred messages a second or more (about 2 MB a
// second) is never trimmed, whatever its collection cycle or memory
// limit; a node with a larger heap may be, but a trim's marking stays
// within Share bytes for each byte allocated since the last one (the
// spare must reach 1/Share of the live heap). An idle node is trimmed
// after a burst and then whenever MinSpareBytes (or an eighth of the
// live heap, if more) of garbage has built up again (its heartbeats
// allocate), every few tens of seconds at most.
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
	// MinSpareBytes is the least spare memory worth a collection (and at
	// least 1/Share of the live heap). Default 16 MiB.
	MinSpareBytes uint64
	// Share is the most a period may allocate, as a fraction 1/Share of
	// the live heap, for the process to count as quiet. Default 8.
	Share uint64
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
	if c.Share == 0 {
		c.Share = 8
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

// Spare is the memory a collection and return would give back at most:
// the objects allocated beyond what was live at the last collection (as
// much garbage as the heap can hold without a collection finding it; some
// of it may be live, a heap that grew since), and the free pages.
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
// the last period, should be trimmed: the period allocated at most
// 1/share of the live heap, and the spare memory is at least min and at
// least 1/share of the live heap. The second bound keeps the trims' work
// in step with the allocation: a trim marks the live heap, and garbage
// worth 1/share of it takes at least share periods of quiet allocation
// to build up, so a large heap is not collected every period.
func Worth(now Heap, allocated, min, share uint64) bool {
	return now.Spare() >= max(min, now.Live/share) && allocated*share <= now.Live
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
	if !Worth(now, now.Allocated-prev.Allocated, t.cfg.MinSpareBytes, t.cfg.Share) {
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
