package runner_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/events"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
	"github.com/parley-chat/parley/projections/store"
)

// BenchmarkEmbeddedReader feeds a single node's durable read models (the
// predecessors, groups, the history and the conversation index, in one
// embedded store on disk) the way its reader does: sixteen partitions,
// each handing over one record at a time, as they do at a few thousand
// random 1:1 messages a second (2,000 accounts, 100-byte bodies). ns/msg
// is wall time per message; cpu-ns/msg the process's CPU time per message
// (the store's flushes and compactions included), which other work on the
// machine skews less. The history grows with b.N: the cost per message
// grows with it.
func BenchmarkEmbeddedReader(b *testing.B) {
	for _, mib := range []uint64{8, 32} { // 32 MiB is the default (infra/pebble)
		b.Run(fmt.Sprintf("memtable=%dMiB", mib), func(b *testing.B) {
			const partitions, perRound = 16, 4000
			rng := rand.New(rand.NewPCG(1, 2))
			body := strings.Repeat("lorem ipsum ", 9)[:100]
			log := sourcetest.NewMemory()
			log.MaxBatch = 1
			var all []int32
			for p := range int32(partitions) {
				all = append(all, p)
			}
			db, err := parleypebble.Open(parleypebble.Config{Dir: b.TempDir(), Logger: quiet(), MemTableBytes: mib << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			convs := conversations.NewPebble(db, conversations.Name)
			specs := []runner.Spec{
				{Name: conversations.PredecessorsName, Projection: conversations.NewPredecessors(convs.LatestPrimed, 1<<16), Tracker: progress.NewMemory()},
				{Name: groups.Name, Projection: groups.NewPebble(db, groups.Name), Tracker: progress.NewMemory()},
				{Name: store.Name, Projection: store.NewPebble(db, store.Name), Tracker: progress.NewMemory()},
				{Name: conversations.Name, Projection: convs, Tracker: progress.NewMemory()},
			}
			last := specs[len(specs)-1].Tracker
			r := runner.New(runner.Config{Epoch: 1, Logger: quiet()},
				runner.Reader{Name: "bench", Source: log.Range(all, nil, nil), Specs: specs})
			ctx, cancel := context.WithCancel(b.Context())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()
			sent := 0
			var cpu time.Duration
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				for range perRound {
					from, to := fmt.Sprintf("u%d", rng.IntN(2000)), fmt.Sprintf("u%d", rng.IntN(2000))
					if from == to {
						continue
					}
					e := events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(),
						Conversation: "d:" + min(from, to) + ":" + max(from, to), SenderAccount: from, SenderDevice: "d",
						Kind: "text", Body: body, ServerTime: time.Now().UnixMilli()}
					payload, err := events.Encode(e)
					if err != nil {
						b.Fatal(err)
					}
					p := events.PartitionFor(e.Conversation, partitions)
					log.Append(p, runner.RawRecord{Name: e.EventName(), Payload: payload, Timestamp: time.Now()})
					sent++
				}
				b.StartTimer()
				before := sourcetest.CPUTime(b)
				wctx, wcancel := context.WithTimeout(ctx, time.Minute)
				err := last.WaitForAll(wctx, log.Ends())
				wcancel()
				if err != nil {
					b.Fatal(err)
				}
				cpu += sourcetest.CPUTime(b) - before
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent), "ns/msg")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(sent), "cpu-ns/msg")

		})
	}
}
