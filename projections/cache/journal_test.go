package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/redis/redistest"
	"github.com/parley-chat/parley/projections"
)

func erasedRecord(part int32, offset int64) projections.Record {
	return projections.Record{Event: events.AccountErased{Account: "alice", ErasedAt: 1, Partitions: 1},
		Position: events.Position{Partition: part, Offset: offset}, MsgID: domain.MsgID(offset + 1)}
}

func TestJournalSince(t *testing.T) {
	ab, g := domain.DirectConversation("alice", "bob").String(), domain.GroupConversation("g").String()
	now := time.Now()
	j := NewJournal(0)
	if _, ok := j.Since(0, 0); ok {
		t.Fatal("a partition never applied here is known")
	}
	j.record([]projections.Record{sentRecord(t, ab, 0, 10, now), sentRecord(t, g, 0, 11, now)})
	j.record([]projections.Record{sentRecord(t, ab, 0, 12, now)})
	j.record([]projections.Record{sentRecord(t, g, 1, 5, now)})
	for _, c := range []struct {
		from int64
		want map[string]domain.MsgID
		ok   bool
	}{
		{9, nil, false}, // below what it saw
		{10, map[string]domain.MsgID{ab: mid(t, 12), g: mid(t, 11)}, true},
		{11, map[string]domain.MsgID{ab: mid(t, 12), g: mid(t, 11)}, true},
		{12, map[string]domain.MsgID{ab: mid(t, 12)}, true},
		{13, nil, true}, // nothing applied from there on
	} {
		got, ok := j.Since(0, c.from)
		if ok != c.ok || len(got) != len(c.want) {
			t.Fatalf("Since(0, %d) = %v, %v; want %v, %v", c.from, got, ok, c.want, c.ok)
		}
		for conv, id := range got {
			if c.want[conv.String()] != id {
				t.Fatalf("Since(0, %d)[%s] = %d, want %d", c.from, conv, id, c.want[conv.String()])
			}
		}
	}
	// A batch after a hole (the partition was elsewhere) starts afresh.
	j.record([]projections.Record{sentRecord(t, g, 0, 20, now)})
	if _, ok := j.Since(0, 12); ok {
		t.Fatal("a loss reaching into the hole is known")
	}
	if got, ok := j.Since(0, 20); !ok || len(got) != 1 {
		t.Fatalf("after the hole: %v, %v", got, ok)
	}
	// An erasure may change any conversation.
	j.record([]projections.Record{erasedRecord(0, 21), sentRecord(t, ab, 0, 22, now)})
	if _, ok := j.Since(0, 21); ok {
		t.Fatal("a loss with an erasure in it is known")
	}
	if got, ok := j.Since(0, 22); !ok || len(got) != 1 {
		t.Fatalf("after the erasure: %v, %v", got, ok)
	}
}

// Past its budget the journal forgets a partition's oldest changes, and
// a loss reaching them is no longer known.
func TestJournalBudget(t *testing.T) {
	conv := domain.DirectConversation("alice", "bob").String()
	j := NewJournal(100 * (changeOverhead + len(conv)))
	for off := range int64(1000) {
		j.record([]projections.Record{sentRecord(t, conv, 0, off, time.Now())})
	}
	if j.bytes > j.budget {
		t.Fatalf("the journal holds %d bytes, over its budget %d", j.bytes, j.budget)
	}
	if _, ok := j.Since(0, 500); ok {
		t.Fatal("a loss beyond the budget is known")
	}
	if got, ok := j.Since(0, 960); !ok || got[domain.DirectConversation("alice", "bob")] != mid(t, 999) {
		t.Fatalf("the last changes: %v, %v", got, ok)
	}
	// Another partition's changes push out the fullest partition's
	// oldest, not their own.
	for off := range int64(30) {
		j.record([]projections.Record{sentRecord(t, conv, 1, off, time.Now())})
	}
	if got, ok := j.Since(1, 0); !ok || len(got) != 1 {
		t.Fatalf("partition 1 forgot its own changes: %v, %v", got, ok)
	}
	if j.bytes > j.budget {
		t.Fatalf("the journal holds %d bytes, over its budget %d", j.bytes, j.budget)
	}
}

// A loss (a failover: the promoted replica had not received the last
// writes) takes a cached message while its conversation's marker stays:
// the cache would vouch for a range it no longer holds. Repair forgets
// the conversations the lost records changed and keeps the rest.
func TestRedisRepairForgetsWhatALossMayHaveTaken(t *testing.T) {
	client, prefix := redistest.Client(t)
	c, err := NewRedis(client, RedisConfig{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	j := NewJournal(0)
	p := NewProjection(c, epoch, false).WithJournal(j)
	ab, g := domain.DirectConversation("alice", "bob"), domain.GroupConversation("g")
	now := time.Now()
	if err := p.ApplyBatch(ctx, []projections.Record{
		sentRecord(t, ab.String(), 0, 0, now), sentRecord(t, ab.String(), 0, 1, now),
		sentRecord(t, g.String(), 0, 2, now), sentRecord(t, ab.String(), 0, 3, now),
	}); err != nil {
		t.Fatal(err)
	}
	// The loss: offset 3's message is gone, the marker is not.
	if err := client.ZRemRangeByScore(ctx, c.key(ab), fmtID(mid(t, 3)), fmtID(mid(t, 3))).Err(); err != nil {
		t.Fatal(err)
	}
	if ms, _, covered, _ := c.After(ctx, ab, mid(t, 1), 10); !covered || len(ms) != 0 {
		t.Fatalf("the loss is not what the test means: %d messages, covered %v", len(ms), covered)
	}
	if err := c.Repair(ctx, j, map[int32]int64{0: 3}); err != nil {
		t.Fatal(err)
	}
	if _, _, covered, _ := c.After(ctx, ab, mid(t, 1), 10); covered {
		t.Fatal("the cache still vouches for the range it lost")
	}
	if ms, _, covered, _ := c.After(ctx, g, mid(t, 2)-1, 10); !covered || len(ms) != 1 {
		t.Fatalf("another conversation lost its cache: %d messages, covered %v", len(ms), covered)
	}
	// The conversation is covered again from what was forgotten on.
	if err := p.ApplyBatch(ctx, []projections.Record{sentRecord(t, ab.String(), 0, 4, now)}); err != nil {
		t.Fatal(err)
	}
	if ms, _, covered, _ := c.After(ctx, ab, mid(t, 3), 10); !covered || len(ms) != 1 || ms[0].MsgID != mid(t, 4) {
		t.Fatalf("after the next message: %v, covered %v", ms, covered)
	}
	// A loss reaching below what the journal holds drops the whole cache.
	if err := c.Repair(ctx, j, map[int32]int64{0: -1}); err != nil {
		t.Fatal(err)
	}
	for _, conv := range []domain.ConversationID{ab, g} {
		if _, _, covered, _ := c.After(ctx, conv, mid(t, 4), 10); covered {
			t.Fatalf("%s is still covered after the cache was cleared", conv)
		}
	}
}

func fmtID(id domain.MsgID) string { return fmt.Sprint(int64(id)) }

// After a loss, a projection reading from the log's start no longer
// covers a conversation it meets from that start: its key may be one the
// loss took, with messages the projection applied before.
func TestProjectionDoubtedCoversFromTheMessage(t *testing.T) {
	p := NewProjection(NewMemory(Retention), epoch, true)
	if got := p.floor(sentRecord(t, "d:a:b", 0, 0, time.Now())); got != 0 {
		t.Fatalf("floor from the log start = %d, want 0", got)
	}
	p.Doubt()
	if got := p.floor(sentRecord(t, "d:a:c", 0, 6, time.Now())); got != mid(t, 6)-1 {
		t.Fatalf("floor after Doubt = %d, want %d", got, mid(t, 6)-1)
	}
}
