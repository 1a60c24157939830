package conversations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
)

// msg is a MessageSent record of conv at offset of partition 0.
func msg(t *testing.T, conv string, offset int64) projections.Record {
	t.Helper()
	c, err := domain.ParseConversationID(conv)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Accounts()
	e := events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
		SenderAccount: string(a), SenderDevice: "d", Kind: "text", Body: "hi", ServerTime: 1}
	id, err := events.MsgID(1, offset)
	if err != nil {
		t.Fatal(err)
	}
	return projections.Record{Event: e, Position: events.Position{Partition: 0, Offset: offset}, MsgID: id}
}

// index is the conversation index as LatestOf sees it, counting reads.
type index struct {
	latest map[domain.ConversationID]domain.MsgID
	reads  int
	err    error
}

func (x *index) LatestOf(_ context.Context, c domain.ConversationID) (domain.MsgID, bool, error) {
	x.reads++
	if x.err != nil {
		return 0, false, x.err
	}
	id, ok := x.latest[c]
	return id, ok, nil
}

func conv(t *testing.T, s string) domain.ConversationID {
	c, err := domain.ParseConversationID(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPredecessors(t *testing.T) {
	ctx := context.Background()
	ab, cd := conv(t, "d:a:b"), conv(t, "d:c:d")
	x := &index{latest: map[domain.ConversationID]domain.MsgID{ab: msg(t, "d:a:b", 3).MsgID}}
	p := conversations.NewPredecessors(x.LatestOf, 4)

	batch := []projections.Record{msg(t, "d:a:b", 10), msg(t, "d:c:d", 11), msg(t, "d:a:b", 12)}
	if err := p.ApplyBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id    domain.MsgID
		known bool
	}{{msg(t, "d:a:b", 3).MsgID, true}, {0, true}, {batch[0].MsgID, true}}
	for i, r := range batch {
		m, _, _ := r.Message()
		id, known, err := p.Before(ctx, r, m.Conversation)
		if err != nil || id != want[i].id || known != want[i].known {
			t.Errorf("record %d: before %d known %v (%v), want %d %v", i, id, known, err, want[i].id, want[i].known)
		}
	}
	if x.reads != 2 {
		t.Errorf("index read %d times, want once per new conversation (2)", x.reads)
	}

	t.Run("a retried batch keeps its answers", func(t *testing.T) {
		if err := p.ApplyBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if id, known, _ := p.Before(ctx, batch[2], ab); id != batch[0].MsgID || !known {
			t.Errorf("after a retry: %d %v", id, known)
		}
	})

	t.Run("the next batch follows on without reading the index", func(t *testing.T) {
		reads := x.reads
		next := []projections.Record{msg(t, "d:c:d", 13)}
		if err := p.ApplyBatch(ctx, next); err != nil {
			t.Fatal(err)
		}
		if id, known, _ := p.Before(ctx, next[0], cd); id != batch[1].MsgID || !known || x.reads != reads {
			t.Errorf("before %d known %v, %d index reads", id, known, x.reads-reads)
		}
	})

	t.Run("an index ahead of the record is not an answer", func(t *testing.T) {
		ahead := &index{latest: map[domain.ConversationID]domain.MsgID{ab: msg(t, "d:a:b", 50).MsgID}}
		q := conversations.NewPredecessors(ahead.LatestOf, 4)
		r := msg(t, "d:a:b", 40)
		if err := q.ApplyBatch(ctx, []projections.Record{r}); err != nil {
			t.Fatal(err)
		}
		if _, known, _ := q.Before(ctx, r, ab); known {
			t.Error("known, want unknown")
		}
	})

	t.Run("forgotten conversations are asked of the index", func(t *testing.T) {
		q := conversations.NewPredecessors(x.LatestOf, 1)
		for i, s := range []string{"d:a:e", "d:a:f", "d:a:g", "d:a:e"} {
			if err := q.ApplyBatch(ctx, []projections.Record{msg(t, s, int64(100+i))}); err != nil {
				t.Fatal(err)
			}
		}
		reads := x.reads
		r := msg(t, "d:a:f", 200)
		if err := q.ApplyBatch(ctx, []projections.Record{r}); err != nil {
			t.Fatal(err)
		}
		if x.reads != reads+1 {
			t.Errorf("a forgotten conversation: %d index reads, want 1", x.reads-reads)
		}
	})

	t.Run("an index error fails the batch", func(t *testing.T) {
		bad := &index{err: errors.New("disk")}
		q := conversations.NewPredecessors(bad.LatestOf, 4)
		if err := q.ApplyBatch(ctx, []projections.Record{msg(t, "d:a:b", 1)}); err == nil {
			t.Error("want an error")
		}
	})
}
