package conversationstest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// ToLayout1 moves the index's keys in db back to layout 1, as a Parley
// before layout 2 wrote them: cm/<conv>/<msgid>, cr/<conv>/<account> and
// cs/<conv>/<account>/<msgid>. It returns how many it moved.
func ToLayout1(t testing.TB, db *pebble.DB) int {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("cc/"), UpperBound: []byte("cc0")})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		conv, rest, _ := bytes.Cut(k[len("cc/"):], []byte("/"))
		kind, rest := rest[0], rest[2:]
		old := map[byte]string{'m': "cm/", 'r': "cr/", 's': "cs/"}[kind]
		if old == "" {
			t.Fatalf("unknown key %q", k)
		}
		if err := errors.Join(b.Set(append(append([]byte(old), conv...), append([]byte("/"), rest...)...), it.Value(), nil), b.Delete(k, nil)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := errors.Join(it.Close(), b.Delete([]byte("cv"), nil), b.Commit(pebble.Sync), b.Close()); err != nil {
		t.Fatal(err)
	}
	return n
}
