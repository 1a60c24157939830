package conversations

import "hash/maphash"

// memo is a bounded map from a key — a conversation's text, or that and
// an account — to a value without pointers, laid out for the garbage
// collector: a map from the key's hash to the value and to where the
// key's text is in one buffer. Neither holds a pointer, so a collection
// marks a few objects however many entries there are, where a map keyed
// by domain.ConversationID holds a string for it to follow per entry
// (the index's held states and cursors and the predecessors' latest
// msgids were some 200,000 of them on a busy single node: see
// docs/benchmarks.md).
//
// Every lookup compares the whole key, so keys whose hashes collide
// never read each other's values: the one put last replaces the other,
// which is then not held. It keeps two generations of up to max entries
// (and max×memoKeyBytes bytes of keys): when the newer one is full it
// becomes the older one, and the older one is dropped. It is not safe
// for concurrent use.
type memo[V any] struct {
	max      int
	hash     func(a, b string) uint64
	cur, old memoGen[V]
}

// memoKeyBytes is the average key length a generation has room for.
const memoKeyBytes = 128

type memoGen[V any] struct {
	slots map[uint64]memoSlot[V]
	text  []byte // the keys, back to back
}

// memoSlot is an entry: its key is text[off:off+a] then the next b bytes.
type memoSlot[V any] struct {
	off, a, b uint32
	v         V
}

func newMemo[V any](max int) *memo[V] {
	seed := maphash.MakeSeed()
	return &memo[V]{max: max, hash: func(a, b string) uint64 {
		h := maphash.String(seed, a)
		if b != "" {
			h ^= maphash.String(seed, b) * 0x9e3779b97f4a7c15
		}
		return h
	}}
}

// is says whether s's key is (a, b).
func (g *memoGen[V]) is(s memoSlot[V], a, b string) bool {
	return int(s.a) == len(a) && int(s.b) == len(b) &&
		string(g.text[s.off:s.off+s.a]) == a && string(g.text[s.off+s.a:s.off+s.a+s.b]) == b
}

// get is the value held for (a, b).
func (m *memo[V]) get(a, b string) (V, bool) {
	h := m.hash(a, b)
	if s, ok := m.cur.slots[h]; ok {
		// Another key in this slot replaced (a, b)'s newer value, if it
		// had one: the older generation's may be stale.
		if m.cur.is(s, a, b) {
			return s.v, true
		}
		var none V
		return none, false
	}
	if s, ok := m.old.slots[h]; ok && m.old.is(s, a, b) {
		return s.v, true
	}
	var none V
	return none, false
}

// put holds v for (a, b).
func (m *memo[V]) put(a, b string, v V) {
	h := m.hash(a, b)
	if s, ok := m.cur.slots[h]; ok && m.cur.is(s, a, b) {
		s.v = v
		m.cur.slots[h] = s
		return
	}
	if m.cur.slots == nil || len(m.cur.slots) >= m.max || len(m.cur.text)+len(a)+len(b) > m.max*memoKeyBytes {
		m.rotate()
	}
	s := memoSlot[V]{off: uint32(len(m.cur.text)), a: uint32(len(a)), b: uint32(len(b)), v: v}
	m.cur.text = append(append(m.cur.text, a...), b...)
	m.cur.slots[h] = s
}

// rotate makes the newer generation the older one and starts a new one
// in the place of the older, reused: a memo in use allocates nothing.
func (m *memo[V]) rotate() {
	next := m.old
	switch {
	case next.slots != nil:
		clear(next.slots)
		next.text = next.text[:0]
	case m.cur.slots != nil: // one generation was filled: make room for a whole one
		next.slots = make(map[uint64]memoSlot[V], m.max)
	default:
		next.slots = make(map[uint64]memoSlot[V])
	}
	m.old, m.cur = m.cur, next
}

// drop forgets (a, b).
func (m *memo[V]) drop(a, b string) {
	h := m.hash(a, b)
	for _, g := range []*memoGen[V]{&m.cur, &m.old} {
		if s, ok := g.slots[h]; ok && g.is(s, a, b) {
			delete(g.slots, h)
		}
	}
}

// reset forgets everything.
func (m *memo[V]) reset() {
	m.cur, m.old = memoGen[V]{}, memoGen[V]{}
}
