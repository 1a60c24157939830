package pebblekv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/projections/internal/pebblekv"
)

func key(i int) []byte { return fmt.Appendf(nil, "mc/account-%d/c-%d", i%977, i) }

func loaded(t testing.TB, maxBytes int64) *pebblekv.Filter {
	f := pebblekv.NewFilter("mc/", maxBytes)
	if err := f.Load(context.Background(), pebbletest.Open(t)); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFilter(t *testing.T) {
	const n = 300_000 // three parts: 65,536, 131,072 and 103,392 of 262,144
	f := loaded(t, 0)
	for i := range n {
		f.Add(key(i))
	}
	for i := range n {
		if f.Absent(key(i)) {
			t.Fatalf("key %d added, yet Absent", i)
		}
	}
	falsePositives := 0
	for i := n; i < 2*n; i++ {
		if !f.Absent(key(i)) {
			falsePositives++
		}
	}
	// About 0.6% for each full part, less for the last, partly filled.
	if rate := float64(falsePositives) / n; rate > 0.02 {
		t.Errorf("false positives: %.2f%%, want at most 2%%", 100*rate)
	}
	if b := f.Bytes(); b < n*12/8 || b > 4*n*12/8 {
		t.Errorf("Bytes = %d for %d keys, want about 1.5 to 6 bytes a key", b, n)
	}
	t.Logf("%d keys: %d bytes, %.2f%% false positives", n, f.Bytes(), 100*float64(falsePositives)/n)
}

// An unloaded filter answers nothing: the store may hold keys it has not
// read yet.
func TestFilterUnloadedAnswersNothing(t *testing.T) {
	f := pebblekv.NewFilter("mc/", 0)
	if f.Absent(key(1)) || f.Loaded() {
		t.Fatal("an unloaded filter answered")
	}
}

// Load reads the keys under the prefix, not the others, and the keys
// added while it runs count too.
func TestFilterLoad(t *testing.T) {
	db := pebbletest.Open(t)
	for i := range 10_000 {
		if err := db.Set(key(i), nil, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	other := []byte("mi/elsewhere")
	if err := db.Set(other, nil, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	f := pebblekv.NewFilter("mc/", 0)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 10_000; i < 20_000; i++ {
			f.Add(key(i))
		}
	})
	if err := f.Load(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range 20_000 {
		if f.Absent(key(i)) {
			t.Fatalf("key %d held, yet Absent", i)
		}
	}
	if !f.Absent(other) {
		t.Error("a key of another prefix was loaded")
	}
}

// A Load cut short leaves the filter unloaded: it never answers from part
// of the store.
func TestFilterLoadCancelled(t *testing.T) {
	db := pebbletest.Open(t)
	for i := range 10_000 {
		if err := db.Set(key(i), nil, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	f := pebblekv.NewFilter("mc/", 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Load(ctx, db); err == nil {
		t.Fatal("Load of a cancelled context returned nil")
	}
	if f.Loaded() || f.Absent(key(20_000)) {
		t.Fatal("a filter whose load was cut short answered")
	}
}

// Past its bound the filter gives up: it frees its parts and answers
// nothing, rather than growing or answering wrong.
func TestFilterGivesUpAtItsBound(t *testing.T) {
	f := loaded(t, 512<<10)  // the first part (96 KiB) and the next (192 KiB); a third would take it to 672 KiB
	for i := range 3 << 16 { // both parts full
		f.Add(key(i))
	}
	if !f.Loaded() || f.Bytes() != 288<<10 {
		t.Fatalf("two parts full: loaded %v, %d bytes; want 288 KiB", f.Loaded(), f.Bytes())
	}
	f.Add(key(3 << 16))
	if f.Loaded() || f.Bytes() != 0 {
		t.Fatalf("past its bound: loaded %v, %d bytes", f.Loaded(), f.Bytes())
	}
	if f.Absent(key(1 << 20)) {
		t.Fatal("a filter that gave up answered")
	}
}

// Adds and Absents from many goroutines, while parts are added: a key is
// never absent after its Add (run with -race).
func TestFilterConcurrent(t *testing.T) {
	f := loaded(t, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < 200_000; i += 4 {
				f.Add(key(i))
				if f.Absent(key(i)) {
					t.Errorf("key %d absent right after its Add", i)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A lookup of a missing key: the filter against the store's own lookup,
// with 500,000 keys in the store (in its memtable, as a single node's
// newest keys are).
func BenchmarkMissingKey(b *testing.B) {
	db := pebbletest.OpenOnDisk(b)
	f := pebblekv.NewFilter("mc/", 0)
	for i := range 500_000 {
		f.Add(key(i))
		if err := db.Set(key(i), nil, pebble.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Load(context.Background(), db); err != nil {
		b.Fatal(err)
	}
	b.Run("filter", func(b *testing.B) {
		i := 1_000_000
		for b.Loop() {
			i++
			f.Absent(key(i)) // a false positive would read the store
		}
	})
	b.Run("store", func(b *testing.B) {
		i := 1_000_000
		for b.Loop() {
			i++
			look, err := pebblekv.NewLookup(db)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := look.Has(key(i)); err != nil {
				b.Fatal(err)
			}
			_ = look.Close()
		}
	})
}

// Keep builds a filter that gave up again from what the store holds: keys
// added and never kept (as the retention deletes them) leave it, the keys
// the store holds, written before or while it rebuilds, stay.
func TestFilterKeepRebuildsFromWhatTheStoreHolds(t *testing.T) {
	db := pebbletest.Open(t)
	held := func(i int) []byte { return fmt.Appendf(nil, "mc/held/%d", i) }
	for i := range 1000 {
		if err := db.Set(held(i), nil, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	f := pebblekv.NewFilter("mc/", 512<<10) // gives up past 196,608 keys
	ctx, cancel := context.WithCancel(context.Background())
	kept := make(chan error, 1)
	go func() { kept <- f.Keep(ctx, db) }()
	defer func() {
		cancel()
		if err := <-kept; !errors.Is(err, context.Canceled) {
			t.Errorf("Keep = %v, want context.Canceled", err)
		}
	}()
	waitLoaded(t, f)
	const churn = 250_000
	for i := range churn {
		f.BeginWrite()
		f.Add(key(i)) // written, then deleted: the store does not hold it
		if i%100 == 0 {
			k := held(1000 + i)
			f.Add(k)
			if err := db.Set(k, nil, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		f.EndWrite()
	}
	waitLoaded(t, f)
	if b := f.Bytes(); b != 96<<10 {
		t.Errorf("after the rebuild: %d bytes, want the first part alone", b)
	}
	for i := 0; i < 1000+churn; i++ {
		if (i < 1000 || i%100 == 0) && f.Absent(held(i)) {
			t.Fatalf("held key %d absent after the rebuild", i)
		}
	}
	gone := 0
	for i := range 100_000 { // added before the filter gave up
		if f.Absent(key(i)) {
			gone++
		}
	}
	if gone < 95_000 {
		t.Errorf("%d of 100,000 keys the store does not hold are absent after the rebuild, want nearly all", gone)
	}
}

// A rebuild waits for the writes under way: a key added while the filter
// had given up, and committed only later, is in the rebuilt filter.
func TestFilterRebuildWaitsForWritesUnderWay(t *testing.T) {
	db := pebbletest.Open(t)
	f := pebblekv.NewFilter("mc/", 512<<10)
	ctx, cancel := context.WithCancel(context.Background())
	kept := make(chan error, 1)
	go func() { kept <- f.Keep(ctx, db) }()
	defer func() { cancel(); <-kept }()
	waitLoaded(t, f)
	k := []byte("mc/alice/late")
	f.BeginWrite()
	for i := 0; f.Loaded(); i++ { // until it gives up
		f.Add(key(i))
	}
	f.Add(k)
	time.Sleep(50 * time.Millisecond) // a rebuild that did not wait would read the store now
	if err := db.Set(k, nil, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	f.EndWrite()
	waitLoaded(t, f) // rebuilt
	if f.Absent(k) {
		t.Fatal("a key committed by a write under way during the rebuild is absent")
	}
}

// A store whose keys do not fit the bound leaves the filter off for good,
// and Keep says so rather than returning as if it had stopped cleanly.
func TestFilterKeepStaysOffWhenTheStoreOutgrowsIt(t *testing.T) {
	db := pebbletest.Open(t)
	b := db.NewBatch()
	for i := range 70_000 { // the first part holds 65,536
		if err := b.Set(fmt.Appendf(nil, "mc/held/%d", i), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	f := pebblekv.NewFilter("mc/", 96<<10) // no room for a second part
	if err := f.Keep(t.Context(), db); !errors.Is(err, pebblekv.ErrOff) {
		t.Fatalf("Keep = %v, want ErrOff", err)
	}
	if f.Loaded() || f.Absent([]byte("mc/held/1")) || f.Bytes() != 0 {
		t.Fatalf("an off filter: loaded %v, bytes %d; want it answering nothing", f.Loaded(), f.Bytes())
	}
}

// waitLoaded waits up to 10 s for f to answer: loaded, or built again.
func waitLoaded(t *testing.T, f *pebblekv.Filter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f.Loaded() {
		if time.Now().After(deadline) {
			t.Fatal("the filter did not load in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
