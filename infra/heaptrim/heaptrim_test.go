package heaptrim

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestWorth(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name      string
		heap      Heap
		allocated uint64
		want      bool
	}{
		{"quiet, garbage and free pages", Heap{Objects: 100 * mib, Live: 60 * mib, Free: 30 * mib}, 5 * mib, true},
		{"quiet, below the minimum", Heap{Objects: 70 * mib, Live: 60 * mib, Free: 4 * mib}, 0, false},
		{"busy: the spare is a period's allocation or two", Heap{Objects: 200 * mib, Live: 60 * mib, Free: 20 * mib}, 80 * mib, false},
		{"just quiet enough: four periods", Heap{Objects: 100 * mib, Live: 60 * mib}, 10 * mib, true},
		{"just too busy", Heap{Objects: 100 * mib, Live: 60 * mib}, 10*mib + 1, false},
		{"objects under the live heap count no garbage", Heap{Objects: 50 * mib, Live: 60 * mib, Free: 20 * mib}, 0, true},
		{"objects under the live heap, little free", Heap{Objects: 50 * mib, Live: 60 * mib, Free: 10 * mib}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Worth(c.heap, c.allocated, 16*mib, 4); got != c.want {
				t.Fatalf("Worth(%+v, %d) = %v, want %v (spare %d)", c.heap, c.allocated, got, c.want, c.heap.Spare())
			}
		})
	}
}

// fakeHeap plays a heap: each read returns the next state, and a free
// collects (what is returned then is the next state too).
type fakeHeap struct {
	states []Heap
	frees  int
}

func (f *fakeHeap) read() Heap {
	h := f.states[0]
	if len(f.states) > 1 {
		f.states = f.states[1:]
	}
	return h
}

func TestCheckMeasuresEachPeriodFromTheLast(t *testing.T) {
	const mib = 1 << 20
	f := &fakeHeap{states: []Heap{
		{Allocated: 1000 * mib, Objects: 200 * mib, Live: 60 * mib}, // first look: only counts
		{Allocated: 1800 * mib, Objects: 220 * mib, Live: 60 * mib}, // 800 MiB in the period: busy
		{Allocated: 1805 * mib, Objects: 225 * mib, Live: 60 * mib}, // 5 MiB: quiet, trimmed
		{Allocated: 1805 * mib, Objects: 60 * mib, Live: 60 * mib},  // after the trim
		{Allocated: 1810 * mib, Objects: 65 * mib, Live: 60 * mib},  // 5 MiB of garbage: not worth it
		{Allocated: 1840 * mib, Objects: 110 * mib, Live: 60 * mib}, // 30 MiB in the period, 50 spare: busy for its spare
		{Allocated: 1842 * mib, Objects: 112 * mib, Live: 60 * mib}, // quiet again
		{Allocated: 1842 * mib, Objects: 60 * mib, Live: 60 * mib},
	}}
	tr := New(Config{})
	tr.read, tr.free = f.read, func() { f.frees++ }
	want := []bool{false, false, true, false, false, true}
	for i, w := range want {
		if got := tr.Check(); got != w {
			t.Fatalf("check %d trimmed = %v, want %v", i, got, w)
		}
	}
	if f.frees != 2 {
		t.Fatalf("%d frees, want 2", f.frees)
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

func TestCheckReturnsAQuietProcesssGarbage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but the trimmer's
	runtime.GC()
	garbage(96 << 20)
	tr := New(Config{})
	if tr.Check() {
		t.Fatal("the first check trimmed: it has no period to measure yet")
	}
	before, objects := released(), ReadHeap().Objects
	if !tr.Check() {
		t.Fatalf("a quiet heap with %d spare bytes was not trimmed", ReadHeap().Spare())
	}
	if got := released() - before; got < 64<<20 {
		t.Fatalf("the trim returned %d bytes to the system, want at least 64 MiB of the 96 MiB of garbage", got)
	}
	if after := ReadHeap().Objects; objects-after < 64<<20 {
		t.Fatalf("the heap's objects went from %d to %d bytes: the garbage was not collected", objects, after)
	}
}

func TestCheckLeavesABusyProcessAlone(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	tr := New(Config{})
	tr.Check()
	garbage(96 << 20) // all of the spare memory allocated in this period
	if tr.Check() {
		t.Fatal("a heap that allocated its spare memory in the last period was trimmed")
	}
}
