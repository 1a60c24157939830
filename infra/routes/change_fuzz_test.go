package routes

import (
	"fmt"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// parseChange reads what the scripts publish, and anything else on the
// channel (another writer, a corrupt message) is refused or read as a
// valid account's change, never a panic.
func FuzzParseChange(f *testing.F) {
	for _, s := range []string{"1 0 alice", "0 1795715193865 bob", "0 x carol", "2 0 a", "1 0 ", "1 0 a b", "", " ", "1  a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		p, ok := parseChange(payload)
		if !ok {
			return
		}
		if _, err := domain.ParseAccountID(string(p.Account)); err != nil {
			t.Fatalf("%q parsed to an invalid account %q", payload, p.Account)
		}
		// What the scripts write reads back the same.
		seen := int64(0)
		if !p.LastSeen.IsZero() {
			seen = p.LastSeen.UnixMilli()
		}
		on := "0"
		if p.Online {
			on = "1"
		}
		q, ok := parseChange(fmt.Sprintf("%s %d %s", on, seen, p.Account))
		if !ok || q != p {
			t.Fatalf("%q: %+v, written again and read %+v %v", payload, p, q, ok)
		}
	})
}
