package pebblekv

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Filter tells which keys of one kind a store certainly does not hold,
// without reading the store: a bloom filter in memory of every key of the
// kind the store was given. A store looks up many keys that are not there
// — a new client message id before each send, a new conversation's state
// — and Pebble has no filter in front of its memtables, so each such miss
// walks them and checks every level's filter. Absent answers from memory.
//
// The filter only ever gains keys: a key deleted from the store stays in
// it and costs a lookup, never a wrong answer. Its rules:
//
//   - Whoever writes a key of the kind Adds it before the write commits,
//     between BeginWrite (before its first Add) and EndWrite (once it has
//     committed).
//   - Load reads the keys the store held before the filter was made; until
//     it has, Absent answers false and every lookup goes to the store.
//   - A true Absent holds for the store as it was when Absent was asked.
//     A reader with a view of the store (an iterator or snapshot) may
//     trust it for that view when the filter was loaded before the view
//     was opened and Absent is asked after: every key in the view was
//     then either read by Load or added before its commit. (Asking before
//     the view opens is not enough: the key may be written in between.)
//
// It counts every Add, 1.5 bytes each in parts that double from 65,536
// keys (96 KiB); every part is checked, so the false positives add up:
// about 0.6% with one part full, 2.3% at a million keys, 5% at 33
// million. When the next part would take it over its bound it gives up,
// frees its parts, and Absent answers false; Keep then builds it again
// from the keys the store holds, as Load does, unless those alone take it
// past its bound. Since it counts Adds, not keys held, a key written
// again counts again: write each key once (a key of the kind is added
// when it is new to the store). A retention that deletes keys leaves
// them counted until the next rebuild.
type Filter struct {
	prefix   []byte
	maxBytes int64
	// parts are the filter's parts, the one that takes new keys last; nil
	// once the filter gave up.
	parts  atomic.Pointer[[]*bloomPart]
	grow   sync.Mutex // held to add a part
	loaded atomic.Bool
	// writes is held for reading by every write that adds keys
	// (BeginWrite), and for writing by a rebuild while it swaps in empty
	// parts: every write whose Adds the old parts took has committed
	// before the rebuild reads the store, and every later one adds to the
	// new parts.
	writes sync.RWMutex
	// gaveUp wakes Keep when the filter gives up.
	gaveUp chan struct{}
}

// DefaultFilterBytes bounds a Filter: 33.5 million keys, in nine parts
// of 47.9 MiB in all (a tenth would take it past the bound).
const DefaultFilterBytes = 64 << 20

// firstPartKeys is the first part's capacity, in 96 KiB.
const firstPartKeys = 1 << 16

// NewFilter returns an empty filter of the keys under prefix, of at most
// maxBytes (DefaultFilterBytes if 0). Load it before it answers.
func NewFilter(prefix string, maxBytes int64) *Filter {
	if maxBytes <= 0 {
		maxBytes = DefaultFilterBytes
	}
	f := &Filter{prefix: []byte(prefix), maxBytes: maxBytes, gaveUp: make(chan struct{}, 1)}
	if newBloomPart(firstPartKeys).bytes() > maxBytes {
		return f // too small to be of use: never answers
	}
	f.empty()
	return f
}

// empty gives the filter one empty part.
func (f *Filter) empty() {
	parts := []*bloomPart{newBloomPart(firstPartKeys)}
	f.parts.Store(&parts)
}

// BeginWrite marks a write that adds keys as under way, until its
// EndWrite once it has committed, or failed. A write that adds to more
// than one filter begins on them always in the same order.
func (f *Filter) BeginWrite() { f.writes.RLock() }

// EndWrite ends what BeginWrite began.
func (f *Filter) EndWrite() { f.writes.RUnlock() }

// filterSeed hashes every filter's keys; a filter lives in one process.
var filterSeed = maphash.MakeSeed()

// Add records that the store holds key (or is about to).
func (f *Filter) Add(key []byte) {
	h := maphash.Bytes(filterSeed, key)
	for {
		ps := f.parts.Load()
		if ps == nil {
			return
		}
		last := (*ps)[len(*ps)-1]
		if last.n.Add(1) <= last.capacity {
			last.add(h)
			return
		}
		f.addPart(last)
	}
}

// addPart adds a part twice the size of full, unless another Add did
// already, or gives up when that part would take the filter over its
// bound.
func (f *Filter) addPart(full *bloomPart) {
	f.grow.Lock()
	defer f.grow.Unlock()
	ps := f.parts.Load()
	if ps == nil || (*ps)[len(*ps)-1] != full {
		return
	}
	next := newBloomPart(2 * full.capacity)
	total := next.bytes()
	for _, p := range *ps {
		total += p.bytes()
	}
	if total > f.maxBytes {
		f.parts.Store(nil)
		select {
		case f.gaveUp <- struct{}{}:
		default:
		}
		return
	}
	grown := append((*ps)[:len(*ps):len(*ps)], next)
	f.parts.Store(&grown)
}

// Absent reports whether the store certainly does not hold key: false
// until Load has read the store, and after the filter gave up.
func (f *Filter) Absent(key []byte) bool {
	if !f.loaded.Load() {
		return false
	}
	ps := f.parts.Load()
	if ps == nil {
		return false
	}
	h := maphash.Bytes(filterSeed, key)
	for _, p := range *ps {
		if p.has(h) {
			return false
		}
	}
	return true
}

// Loaded reports whether the filter answers: Load has read the store, and
// the filter has not given up.
func (f *Filter) Loaded() bool { return f.loaded.Load() && f.parts.Load() != nil }

// Bytes is the memory the filter's parts take.
func (f *Filter) Bytes() int64 {
	ps := f.parts.Load()
	if ps == nil {
		return 0
	}
	var n int64
	for _, p := range *ps {
		n += p.bytes()
	}
	return n
}

// ErrOff is what Keep returns when the keys the store holds do not fit
// the filter's bound: the filter stays off, and every lookup of its kind
// reads the store, until the process starts again.
var ErrOff = errors.New("the keys the store holds outgrow the filter's bound: it stays off and lookups read the store")

// Keep loads the filter (Load), then, each time it gives up, builds it
// again from the keys db holds, until ctx ends or it gives up while
// loading (the keys db holds, with those written meanwhile, take it past
// its bound): it then stays off. It returns ctx's error, ErrOff when it
// stopped for good, or the error of a load.
func (f *Filter) Keep(ctx context.Context, db pebble.Reader) error {
	for {
		if err := f.Load(ctx, db); err != nil {
			return err
		}
		if f.parts.Load() == nil {
			return fmt.Errorf("filter of %q keys: %w", f.prefix, ErrOff)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.gaveUp:
		}
		f.writes.Lock()
		f.loaded.Store(false)
		f.empty()
		f.writes.Unlock()
	}
}

// Load adds the keys db holds under the filter's prefix, then lets the
// filter answer. Make the filter before anything writes keys of its kind,
// then Load it, in the background if need be: lookups go to the store
// until it returns. It stops, leaving the filter unloaded, when ctx ends.
func (f *Filter) Load(ctx context.Context, db pebble.Reader) error {
	it, err := Prefix(db, f.prefix)
	if err != nil {
		return err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%4096 == 0 {
			if ctx.Err() != nil {
				_ = it.Close()
				return ctx.Err()
			}
			if f.parts.Load() == nil {
				break // gave up: reading on would change nothing
			}
		}
		f.Add(it.Key())
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return err
	}
	if err := it.Close(); err != nil {
		return err
	}
	f.loaded.Store(true)
	return nil
}

// bloomPart is a blocked bloom filter: a key sets bitsPerBlockKey bits of
// one 512-bit block (a cache line), chosen by its hash.
type bloomPart struct {
	words    []uint64 // blocks of 8 words
	blocks   uint64
	capacity int64
	n        atomic.Int64 // keys added, and Adds that found it full
}

// 12 bits a key and 8 bits set per key: about 0.5% false positives in a
// full part (a blocked filter loses a little against a plain one).
const (
	bitsPerKey      = 12
	bitsPerBlockKey = 8
)

func newBloomPart(capacity int64) *bloomPart {
	blocks := (capacity*bitsPerKey + 511) / 512
	return &bloomPart{words: make([]uint64, blocks*8), blocks: uint64(blocks), capacity: capacity}
}

func (p *bloomPart) bytes() int64 { return int64(len(p.words)) * 8 }

// block is h's block, and the first bit and the step of its bits in it
// (double hashing): the block from h's high bits, the bits from its low
// bits and a remix of all of them.
func (p *bloomPart) block(h uint64) (words []uint64, bit, step uint32) {
	b, _ := bits.Mul64(h, p.blocks)
	return p.words[b*8 : b*8+8], uint32(h), uint32((h*0x9e3779b97f4a7c15)>>32) | 1
}

func (p *bloomPart) add(h uint64) {
	words, bit, step := p.block(h)
	for range bitsPerBlockKey {
		w, mask := &words[(bit&511)>>6], uint64(1)<<(bit&63)
		if atomic.LoadUint64(w)&mask == 0 {
			atomic.OrUint64(w, mask)
		}
		bit += step
	}
}

func (p *bloomPart) has(h uint64) bool {
	words, bit, step := p.block(h)
	for range bitsPerBlockKey {
		if atomic.LoadUint64(&words[(bit&511)>>6])&(uint64(1)<<(bit&63)) == 0 {
			return false
		}
		bit += step
	}
	return true
}
