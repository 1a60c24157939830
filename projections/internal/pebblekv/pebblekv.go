// Package pebblekv holds what the embedded store's adapters share: point
// lookups that use the bloom filters of every level, and prefix scans.
package pebblekv

import (
	"bytes"
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// Lookup reads single keys. A plain Get consults no bloom filter in the
// last level, where most of the data lies, so every miss — the common case
// when the store checks that a message or a client message id is not taken
// yet — reads and decompresses a block. A prefix seek with the last level's
// filters on spares it (the default comparer's prefix is the whole key).
// One Lookup serves many keys; Close it after.
type Lookup struct {
	it *pebble.Iterator
}

// lookupOptions are every Lookup's: shared, since the iterator copies
// them, rather than made (and allocated) for each.
var lookupOptions = pebble.IterOptions{UseL6Filters: true}

// NewLookup returns a Lookup over r (a DB or a snapshot). It sees r as it
// is when created.
func NewLookup(r pebble.Reader) (*Lookup, error) {
	it, err := r.NewIter(&lookupOptions)
	if err != nil {
		return nil, err
	}
	return &Lookup{it: it}, nil
}

// Get returns a copy of key's value; ok is false when key is absent.
func (l *Lookup) Get(key []byte) (val []byte, ok bool, err error) {
	if !l.it.SeekPrefixGE(key) || !bytes.Equal(l.it.Key(), key) {
		return nil, false, l.it.Error()
	}
	v, err := l.it.ValueAndErr()
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), v...), true, nil
}

// Has reports whether key is present.
func (l *Lookup) Has(key []byte) (bool, error) {
	if !l.it.SeekPrefixGE(key) || !bytes.Equal(l.it.Key(), key) {
		return false, l.it.Error()
	}
	return true, nil
}

// Close releases the Lookup.
func (l *Lookup) Close() error { return l.it.Close() }

// Get reads one key of r with a Lookup of its own.
func Get(r pebble.Reader, key []byte) (val []byte, ok bool, err error) {
	l, err := NewLookup(r)
	if err != nil {
		return nil, false, err
	}
	defer l.Close()
	return l.Get(key)
}

// Prefix iterates the keys of r under prefix.
func Prefix(r pebble.Reader, prefix []byte) (*pebble.Iterator, error) {
	upper := append([]byte(nil), prefix...)
	for i := len(upper) - 1; i >= 0; i-- {
		if upper[i] < 0xff {
			upper[i]++
			upper = upper[:i+1]
			return r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
		}
	}
	return nil, errors.New("pebblekv: a prefix of 0xff bytes has no upper bound")
}
