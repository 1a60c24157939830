package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkAppend measures acknowledged appends to the embedded broker from
// many goroutines at once, the way gateway connections publish; the
// idempotent producer batches concurrent sends.
func BenchmarkAppend(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("senders=%d", par*2), func(b *testing.B) {
			br, l := startLog(b, b.TempDir())
			defer br.Close()
			defer l.Close()
			var n atomic.Int64
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					if _, err := l.Append(context.Background(), uuid.NewString(), sent(fmt.Sprintf("d:a%d:b", i%100), i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
