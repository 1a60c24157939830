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
