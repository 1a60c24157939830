package conversations

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/parley-chat/parley/projections/internal/heapscan"
)

// collide makes every key of m hash alike.
func collide[V any](m *memo[V]) *memo[V] {
	m.hash = func(string, string) uint64 { return 7 }
	return m
}

func TestMemoNeverAnswersForAnotherKey(t *testing.T) {
	m := collide(newMemo[int](100))
	m.put("d:alice:bob", "", 1)
	m.put("d:alice:bo", "b", 2) // the same bytes, cut elsewhere
	if v, ok := m.get("d:alice:bob", ""); ok {
		t.Fatalf("a key replaced by a colliding one answered %d", v)
	}
	if v, ok := m.get("d:alice:bo", "b"); !ok || v != 2 {
		t.Fatalf("get = %d, %v; want 2", v, ok)
	}
	for _, k := range [][2]string{{"d:alice:bo", ""}, {"d:alice:bob", "b"}, {"", "d:alice:bob"}, {"d:alice:bo", "c"}} {
		if v, ok := m.get(k[0], k[1]); ok {
			t.Errorf("get%q = %d for a key never put", k, v)
		}
	}
}

func TestMemoNeverAnswersWithAStaleValue(t *testing.T) {
	m := newMemo[int](3)
	m.hash = func(a, _ string) uint64 { // x collides with a
		if a == "x" {
			a = "a"
		}
		return uint64(a[0])
	}
	m.put("a", "", 1)
	m.put("b", "", 2)
	m.put("c", "", 3)
	m.put("d", "", 4)  // a, b and c become the older generation
	m.put("a", "", 10) // newer
	m.put("x", "", 0)  // replaces a's newer value in the newer generation
	if v, ok := m.get("a", ""); ok {
		t.Fatalf("get(a) = %d; want nothing: its newer value was replaced, its older one is stale", v)
	}
	if v, ok := m.get("b", ""); !ok || v != 2 {
		t.Fatalf("get(b) = %d, %v; want 2", v, ok)
	}

	m = newMemo[int](2)
	m.put("a", "", 1)
	m.put("b", "", 2)
	m.put("c", "", 3) // a and b become the older generation
	if v, ok := m.get("a", ""); !ok || v != 1 {
		t.Fatalf("get(a) = %d, %v; want 1 from the older generation", v, ok)
	}
	m.put("a", "", 4)
	if v, ok := m.get("a", ""); !ok || v != 4 {
		t.Fatalf("get(a) = %d, %v; want the newer 4", v, ok)
	}
	m.drop("a", "")
	if v, ok := m.get("a", ""); ok {
		t.Fatalf("get(a) = %d after drop; want nothing, not the older value", v)
	}
	m.put("d", "", 5)
	m.put("e", "", 6) // the newer generation (c, d) was full: b leaves
	if _, ok := m.get("b", ""); ok {
		t.Fatal("b outlived two generations")
	}
	if v, ok := m.get("c", ""); !ok || v != 3 {
		t.Fatalf("get(c) = %d, %v; want 3", v, ok)
	}
	m.reset()
	if n := len(m.cur.slots) + len(m.old.slots); n != 0 {
		t.Fatalf("len after reset = %d", n)
	}
}

func TestMemoBoundsItsKeysInBytes(t *testing.T) {
	m := newMemo[int](4)
	long := string(make([]byte, 3*memoKeyBytes))
	for i := range 10 {
		m.put(fmt.Sprint(i), long, i)
		if n := len(m.cur.text) + len(m.old.text); n > 2*4*memoKeyBytes {
			t.Fatalf("after %d long keys the memo holds %d bytes of keys; want at most %d", i+1, n, 2*4*memoKeyBytes)
		}
	}
	if v, ok := m.get("9", long); !ok || v != 9 {
		t.Fatalf("get = %d, %v; want the last key put", v, ok)
	}
}

// TestMemoHoldsNoPointersPerEntry: what a collection scans of a full memo
// does not grow with its entries (a map keyed by conversation is scanned
// whole, for the key strings).
func TestMemoHoldsNoPointersPerEntry(t *testing.T) {
	const n = 20000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("d:account-%06d:account-%06d", i, i+1)
	}
	before := heapscan.Bytes()
	m := newMemo[cursor](n)
	for i, k := range keys {
		m.put(k, "account", cursor{ReadSeq: int64(i)})
	}
	after := heapscan.Bytes()
	runtime.KeepAlive(keys)
	if v, ok := m.get(keys[n/2], "account"); !ok || v.ReadSeq != n/2 {
		t.Fatalf("get = %+v, %v", v, ok)
	}
	if grew := after - before; grew > n {
		t.Fatalf("%d entries added %d bytes for the collector to scan; want under a byte an entry", n, grew)
	}
}

func TestMemoInUseAllocatesNothing(t *testing.T) {
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("d:account-%06d:account-%06d", i, i+1)
	}
	m := newMemo[int](16)
	for i, k := range keys { // two generations filled
		m.put(k, "", i)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		m.put(keys[i%len(keys)], "account", i)
		m.get(keys[(i+7)%len(keys)], "account")
		i++
	}); n != 0 {
		t.Fatalf("a put and a get allocate %.2f times; want none once the generations are made", n)
	}
}
