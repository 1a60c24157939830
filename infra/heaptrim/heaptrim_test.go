package heaptrim

import (
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

const mib = 1 << 20

func TestWorth(t *testing.T) {
	cases := []struct {
		name      string
		heap      Heap
		allocated uint64
		want      bool
	}{
		{"idle: garbage and free pages", Heap{Objects: 100 * mib, Live: 80 * mib, Free: 30 * mib}, 5 * mib, true},
		{"idle, nothing allocated", Heap{Objects: 100 * mib, Live: 60 * mib}, 0, true},
		{"idle, spare below the minimum", Heap{Objects: 70 * mib, Live: 60 * mib, Free: 4 * mib}, 0, false},
		{"busy", Heap{Objects: 200 * mib, Live: 60 * mib, Free: 20 * mib}, 20 * mib, false},
		{"just quiet enough: an eighth of the live heap", Heap{Objects: 136 * mib, Live: 80 * mib}, 10 * mib, true},
		{"just too busy", Heap{Objects: 136 * mib, Live: 80 * mib}, 10*mib + 1, false},
		{"objects under the live heap count no garbage", Heap{Objects: 50 * mib, Live: 60 * mib, Free: 20 * mib}, 0, true},
		{"objects under the live heap, little free", Heap{Objects: 50 * mib, Live: 60 * mib, Free: 10 * mib}, 0, false},
		{"a large live heap: its spare under an eighth of it", Heap{Objects: 899 * mib, Live: 800 * mib}, 5 * mib, false},
		{"a large live heap: an eighth of it spare", Heap{Objects: 900 * mib, Live: 800 * mib}, 5 * mib, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Worth(c.heap, c.allocated, 16*mib, 8); got != c.want {
				t.Fatalf("Worth(%+v, %d) = %v, want %v (spare %d)", c.heap, c.allocated, got, c.want, c.heap.Spare())
			}
		})
	}
}

// simHeap plays a process that allocates a fixed amount a period and
// collects, by itself, when its objects reach its goal, the smaller of
// live × 5 (gc-percent 400) and limit; a trim collects at once.
type simHeap struct {
	live, limit uint64
	goal        uint64
	h           Heap
	natural     int // collections the process ran by itself
}

func newSim(live, limit uint64) *simHeap {
	s := &simHeap{live: live, limit: limit}
	s.collect()
	return s
}

func (s *simHeap) collect() {
	s.h.Objects, s.h.Live, s.h.Free = s.live, s.live, 0
	s.goal = min(5*s.live, s.limit)
}

func (s *simHeap) allocate(n uint64) {
	s.h.Allocated += n
	s.h.Objects += n
	if s.h.Objects >= s.goal {
		s.natural++
		s.collect()
	}
}

// run checks once, then periods times allocates perPeriod and checks,
// and returns how many checks trimmed.
func (s *simHeap) run(perPeriod uint64, periods int) int {
	tr := New(Config{})
	tr.read, tr.free = func() Heap { return s.h }, s.collect
	tr.Check()
	trims := 0
	for i := 0; i < periods; i++ {
		s.allocate(perPeriod)
		if tr.Check() {
			trims++
		}
	}
	return trims
}

// A process under load is never trimmed, however long its collection
// cycle; an idle one is, once its garbage is worth it.
func TestCheckTrimsOnlyAQuietProcess(t *testing.T) {
	cases := []struct {
		name              string
		live, limit, rate uint64
		minTrims          int
		maxTrims          int
	}{
		{"200 sends/s: 35 MiB a period, cycles of 50 s", 80 * mib, 256 * mib, 35 * mib, 0, 0},
		{"no memory limit, 40 MiB a period: cycles of 100 s", 100 * mib, 1 << 40, 40 * mib, 0, 0},
		{"100 sends/s: 17 MiB a period, cycles of 100 s", 80 * mib, 256 * mib, 17 * mib, 0, 0},
		{"idle connections: 7 MiB a period, 85 MiB live", 85 * mib, 256 * mib, 7 * mib, 10, 30},
		{"quiet: 1 MiB a period", 80 * mib, 256 * mib, 1 * mib, 3, 4},
		{"many idle connections: 900 MiB live, 20 MiB a period: every six periods", 900 * mib, 1 << 40, 20 * mib, 8, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(c.live, c.limit)
			got := s.run(c.rate, 60)
			if got < c.minTrims || got > c.maxTrims {
				t.Fatalf("%d trims in 60 periods (%d collections of its own), want %d to %d", got, s.natural, c.minTrims, c.maxTrims)
			}
		})
	}
}

func TestCheckMeasuresEachPeriodFromTheLast(t *testing.T) {
	states := []Heap{
		{Allocated: 1000 * mib, Objects: 200 * mib, Live: 80 * mib}, // first look: only counts
		{Allocated: 1040 * mib, Objects: 240 * mib, Live: 80 * mib}, // 40 MiB in the period: busy
		{Allocated: 1041 * mib, Objects: 241 * mib, Live: 80 * mib}, // 1 MiB: quiet, trimmed
		{Allocated: 1041 * mib, Objects: 80 * mib, Live: 80 * mib},  // after the trim
		{Allocated: 1046 * mib, Objects: 85 * mib, Live: 80 * mib},  // 5 MiB of garbage: not worth it
		{Allocated: 1066 * mib, Objects: 105 * mib, Live: 80 * mib}, // 20 MiB in the period: busy
		{Allocated: 1067 * mib, Objects: 106 * mib, Live: 80 * mib}, // quiet again
		{Allocated: 1067 * mib, Objects: 80 * mib, Live: 80 * mib},
	}
	frees := 0
	tr := New(Config{})
	tr.read = func() Heap {
		h := states[0]
		if len(states) > 1 {
			states = states[1:]
		}
		return h
	}
	tr.free = func() { frees++ }
	for i, want := range []bool{false, false, true, false, false, true} {
		if got := tr.Check(); got != want {
			t.Fatalf("check %d trimmed = %v, want %v", i, got, want)
		}
	}
	if frees != 2 {
		t.Fatalf("%d frees, want 2", frees)
	}
}

func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var sink [][]byte

// garbage leaves n bytes of garbage on the heap.
func garbage(n int) {
	for i := 0; i < n/(64<<10); i++ {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
}

var ballast []byte

// settle holds live bytes on the heap, collects and returns the rest, and
// sets the collector off: nothing collects but the trimmer. It returns a
// function that lets the live bytes go and restores the collector.
func settle(live int) func() {
	ballast = make([]byte, live)
	debug.FreeOSMemory()
	gc := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(gc)
		ballast = nil
	}
}

func TestCheckReturnsAQuietProcesssGarbage(t *testing.T) {
	defer settle(64 * mib)()
	garbage(96 * mib)
	tr := New(Config{})
	if tr.Check() {
		t.Fatal("the first check trimmed: it has no period to measure yet")
	}
	before, objects := released(), ReadHeap().Objects
	if !tr.Check() {
		h := ReadHeap()
		t.Fatalf("a quiet heap with %d spare bytes and %d live was not trimmed", h.Spare(), h.Live)
	}
	if after := released(); after < before+64*mib {
		t.Fatalf("the trim returned %d bytes to the system (from %d to %d), want at least 64 MiB of the 96 MiB of garbage", int64(after)-int64(before), before, after)
	}
	if after := ReadHeap().Objects; after+64*mib > objects {
		t.Fatalf("the heap's objects went from %d to %d bytes: the garbage was not collected", objects, after)
	}
}

func TestCheckLeavesABusyProcessAlone(t *testing.T) {
	defer settle(64 * mib)()
	tr := New(Config{})
	tr.Check()
	for i := 0; i < 3; i++ {
		garbage(16 * mib) // a quarter of the live heap each period
		if tr.Check() {
			t.Fatalf("period %d: a heap that allocated 16 MiB in the period with 64 MiB live was trimmed", i)
		}
	}
}
