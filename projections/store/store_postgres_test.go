package store_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/store/storetest"
)

func TestPostgresGroupCommitContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.NewGroupCommit(store.NewPostgres(postgrestest.Open(t)), 0)
	})
}

func TestPostgresContract(t *testing.T) {
	postgrestest.DSN(t) // skip (or fail on CI) before any subtest when the server is away
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.NewPostgres(postgrestest.Open(t))
	})
}

func TestPostgresAfterRejectsBadArguments(t *testing.T) {
	s := store.NewPostgres(postgrestest.Open(t))
	ctx := context.Background()
	if _, _, err := s.After(ctx, ab, 0, -1); err == nil {
		t.Error("After with a negative limit: no error")
	}
	if _, _, err := s.After(ctx, domain.ConversationID{}, 0, 10); err == nil {
		t.Error("After of the zero conversation: no error")
	}
	if err := s.Save(ctx, storetest.Msg(domain.ConversationID{}, 1)); err == nil {
		t.Error("Save of a message without conversation: no error")
	}
}

// BenchmarkPostgresSave measures Save with one message per call (what the
// projection does today, one record at a time) and with 100 (a batching
// projection). ns/op is per call; msgs/s is the throughput.
func BenchmarkPostgresSave(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := store.NewPostgres(postgrestest.Open(b))
			ctx := context.Background()
			convs := make([]domain.ConversationID, 64)
			for i := range convs {
				if i%2 == 0 {
					convs[i] = domain.DirectConversation("alice", domain.AccountID(fmt.Sprint("peer", i)))
				} else {
					convs[i] = domain.GroupConversation(domain.GroupID(fmt.Sprint("g", i)))
				}
			}
			// Messages are made cheaply from a template, so that allocs/op
			// are Save's own (about one client id string per message here).
			tmpl := storetest.Msg(ab, 0)
			tmpl.Body = strings.Repeat("x", 200)
			msgs := make([]domain.Message, batch)
			next := domain.MsgID(0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range msgs {
					next++
					m := tmpl
					m.MsgID, m.Conversation = next, convs[int(next)%len(convs)]
					binary.BigEndian.PutUint64(m.ID[8:], uint64(next))
					m.ClientMsgID = strconv.FormatInt(int64(next), 36)
					msgs[i] = m
				}
				if err := s.Save(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkProjectionWrites compares the store projection's write pattern —
// one message per Save from each of 16 partitions at once — with and
// without group commit. Compare the two sub-benchmarks as a ratio in one run.
func BenchmarkProjectionWrites(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		b.Run(fmt.Sprintf("groupcommit=%v", grouped), func(b *testing.B) {
			var s store.Store = store.NewPostgres(postgrestest.Open(b))
			if grouped {
				s = store.NewGroupCommit(s, 0)
			}
			tmpl := storetest.Msg(ab, 0)
			var next atomic.Int64
			b.SetParallelism(8) // 16 goroutines on 2 cores: the 16 partitions
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := next.Add(1)
					m := tmpl
					m.MsgID = domain.MsgID(n)
					m.Conversation = domain.DirectConversation("alice", domain.AccountID(fmt.Sprint("p", n%16)))
					binary.BigEndian.PutUint64(m.ID[8:], uint64(n))
					m.ClientMsgID = strconv.FormatInt(n, 36)
					if err := s.Save(context.Background(), m); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
