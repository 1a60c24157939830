package store_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/postgres/postgrestest"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/store/storetest"
)

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
