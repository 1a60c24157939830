package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
)

// BenchmarkAppend measures acknowledged appends to the embedded broker from
// many goroutines at once, the way gateway connections publish, over the
// Kafka protocol (the idempotent producer batches concurrent sends) and in
// process (concurrent appends commit together); cpu-ns/op is the
// process's CPU time (the broker's included) per append.
func BenchmarkAppend(b *testing.B) {
	for _, path := range appendPaths {
		for _, par := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/senders=%d", path.name, par*2), func(b *testing.B) {
				benchAppend(b, path.inProcess, par, EmbeddedConfig{DataDir: b.TempDir()})
			})
		}
	}
}

// BenchmarkAppendSynced is BenchmarkAppend with every batch fsynced
// (SyncWrites), where an append costs about an fsync and the appends
// that share one are what counts.
func BenchmarkAppendSynced(b *testing.B) {
	for _, path := range appendPaths {
		b.Run(fmt.Sprintf("%s/senders=128", path.name), func(b *testing.B) {
			benchAppend(b, path.inProcess, 64, EmbeddedConfig{DataDir: b.TempDir(), SyncWrites: true})
		})
	}
}

func benchAppend(b *testing.B, inProcess bool, par int, ecfg EmbeddedConfig) {
	br, l := startLogWith(b, inProcess, ecfg, Config{Partitions: 4})
	defer br.Close()
	defer l.Close()
	cpu := appendInParallel(b, l, par, 100, nil)
	b.StopTimer()
	b.ReportMetric(float64((sourcetest.CPUTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// appendInParallel resets b's timer and appends b.N messages to convs
// conversations from par×GOMAXPROCS senders, then waits for done, if
// given, to report them all; it returns the process's CPU time at the
// start, for a cpu-ns/op metric.
func appendInParallel(b *testing.B, l *Log, par, convs int, done func(appended int64) bool) time.Duration {
	var n atomic.Int64
	b.SetParallelism(par)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := sourcetest.CPUTime(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if _, err := l.Append(context.Background(), uuid.NewString(), sent(fmt.Sprintf("d:a%d:b", i%convs), i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for done != nil && !done(n.Load()) {
		time.Sleep(100 * time.Microsecond)
	}
	return cpu
}

// BenchmarkFollow measures a following read of the conversation topic as
// the single node's reader makes it, per record: appends of chat-sized
// messages from 32 senders at once over 16 partitions, each op one record
// appended and handed to the reader's handler. It compares the
// Kafka-protocol source (Sarama fetching over loopback) with the
// in-process one; the appends cost the same in both.
func BenchmarkFollow(b *testing.B) {
	sources := map[string]func(br *Embedded, l *Log, from map[int32]int64) runner.Source{
		"source=kafka": func(_ *Embedded, l *Log, from map[int32]int64) runner.Source { return l.RangeSource(from, nil) },
		"source=inprocess": func(br *Embedded, l *Log, from map[int32]int64) runner.Source {
			return br.RangeSource(l.Topic(), from, nil)
		},
	}
	for _, name := range []string{"source=kafka", "source=inprocess"} {
		b.Run(name, func(b *testing.B) {
			br, l := startLogWith(b, false, EmbeddedConfig{DataDir: b.TempDir()}, Config{Partitions: 16})
			defer br.Close()
			defer l.Close()
			from := map[int32]int64{}
			for p := range int32(16) {
				from[p] = 0
			}
			var seen atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- sources[name](br, l, from).Consume(ctx, func(_ context.Context, bt runner.Batch) error {
					seen.Add(int64(len(bt.Records)))
					return nil
				})
			}()
			cpu := appendInParallel(b, l, 16, 1000, func(appended int64) bool { return seen.Load() >= appended })
			b.StopTimer()
			b.ReportMetric(float64((sourcetest.CPUTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
			cancel()
			<-done
		})
	}
}
