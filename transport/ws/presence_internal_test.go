package ws

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/wire"
)

// BenchmarkPresenceSubscriptions reports the memory of one subscription
// (connections × wire.MaxPresenceAccounts, each account watched by many
// connections, as contacts are, with 16-byte account ids), which
// Config.MaxPresenceWatches is sized from.
func BenchmarkPresenceSubscriptions(b *testing.B) {
	const conns, accounts = 400, 4096
	ids := make([]domain.AccountID, accounts)
	for i := range ids {
		ids[i] = domain.AccountID(fmt.Sprintf("account-%08d", i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := &presenceHub{}
	sessions := make([]*session, conns)
	for i := range sessions {
		sessions[i] = &session{}
		list := make([]domain.AccountID, wire.MaxPresenceAccounts)
		for j := range list {
			// Each request decodes its own copies of the ids.
			list[j] = domain.AccountID(strings.Clone(string(ids[(i*7+j*13)%accounts])))
		}
		if err := h.replace(sessions[i], list, 1<<30); err != nil {
			b.Fatal(err)
		}
		h.release(sessions[i])
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(h.total), "bytes/subscription")
	runtime.KeepAlive(sessions)
}

// After a wave of subscriptions leaves, the hub's map is made anew (a Go
// map keeps the room of its largest size), and what stays watched stays.
func TestPresenceHubShrinksAfterAWave(t *testing.T) {
	h := &presenceHub{}
	sessions := make([]*session, 100)
	for i := range sessions {
		sessions[i] = &session{}
		list := make([]domain.AccountID, wire.MaxPresenceAccounts)
		for j := range list {
			list[j] = domain.AccountID(fmt.Sprintf("a-%d-%d", i, j))
		}
		if err := h.replace(sessions[i], list, 1<<30); err != nil {
			t.Fatal(err)
		}
		h.release(sessions[i])
	}
	if len(h.watchers) != 100*wire.MaxPresenceAccounts {
		t.Fatalf("%d accounts watched", len(h.watchers))
	}
	for _, s := range sessions[1:] {
		h.drop(s)
	}
	// Made anew each time it fell under a quarter of its peak, down to
	// where that no longer pays (a peak under 4,096 accounts).
	if h.peak >= 4096 || len(h.watchers) != wire.MaxPresenceAccounts {
		t.Errorf("after the wave left: peak %d, %d accounts watched; want the map made anew (peak under 4096)", h.peak, len(h.watchers))
	}
	if _, ok := h.watchers["a-0-7"][sessions[0]]; !ok || h.total != wire.MaxPresenceAccounts {
		t.Errorf("the session that stayed lost its subscriptions (total %d)", h.total)
	}
}
