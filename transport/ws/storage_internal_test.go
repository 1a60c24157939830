package ws

import (
	"fmt"
	"testing"
)

// The storage keeps what gws's map would: a key stored twice holds its
// last value, a deleted key is gone, and keys past the inline ones are
// kept too.
func TestStorageKeepsWhatAMapWould(t *testing.T) {
	s := newStorage()
	want := map[string]any{}
	check := func(step string) {
		t.Helper()
		if s.Len() != len(want) {
			t.Fatalf("%s: %d keys, want %d", step, s.Len(), len(want))
		}
		for k, v := range want {
			if got, ok := s.Load(k); !ok || got != v {
				t.Fatalf("%s: %s = %v, %v, want %v", step, k, got, ok, v)
			}
		}
		if _, ok := s.Load("never"); ok {
			t.Fatalf("%s: a key never stored is found", step)
		}
		seen := map[string]any{}
		s.Range(func(k string, v any) bool { seen[k] = v; return true })
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("%s: Range saw %v, want %v", step, seen, want)
		}
	}
	put := func(k string, v any) { s.Store(k, v); want[k] = v }
	del := func(k string) { s.Delete(k); delete(want, k) }
	check("empty")
	put(sessionKey, 1)
	put(trustedKey, "id")
	check("two keys")
	put(sessionKey, 2)
	check("stored again")
	put("third", 3)
	put("fourth", 4)
	check("past the inline keys")
	del(trustedKey)
	del("never")
	check("deleted")
	del(sessionKey)
	del("third")
	del("fourth")
	check("all deleted")
	put("again", 5)
	check("stored after")
	calls := 0
	put("more", 6)
	s.Range(func(string, any) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("Range went on after false: %d calls", calls)
	}
}
