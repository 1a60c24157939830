package retention_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/retention"
	"github.com/parley-chat/parley/projections/store"
)

var (
	t0 = time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC)
	ab = domain.DirectConversation("alice", "bob")
	g1 = domain.GroupConversation("g1")
)

func msg(conv domain.ConversationID, id domain.MsgID, at time.Time) domain.Message {
	return domain.Message{ID: uuid.New(), MsgID: id, ClientMsgID: fmt.Sprint("c", conv, id),
		Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: conv, Kind: "text", Body: "hi", ServerTime: at}
}

type runs struct {
	n                    int
	fromStore, fromCache int
	err                  error
}

func (r *runs) RetentionRun(_ time.Time, s, c int, err error) {
	r.n++
	r.fromStore, r.fromCache, r.err = s, c, err
}

// A run removes from the store and the cache exactly the messages older
// than the retention, a small batch at a time, and reports it.
func TestRunOnceRemovesWhatIsOld(t *testing.T) {
	ctx := context.Background()
	now := t0
	st := store.NewMemory()
	c := cache.NewMemoryWithClock(cache.Retention, func() time.Time { return now })
	var all []domain.Message
	for i := domain.MsgID(1); i <= 25; i++ {
		// ab: 1..25, one a minute, the first 20 more than an hour old
		all = append(all, msg(ab, i, t0.Add(-80*time.Minute+time.Duration(i)*3*time.Minute)))
	}
	all = append(all, msg(g1, 100, t0.Add(-2*time.Hour)), msg(g1, 101, t0.Add(-time.Minute)))
	if err := st.Save(ctx, all...); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if err := c.Add(ctx, m, 0); err != nil {
			t.Fatal(err)
		}
	}
	obs := &runs{}
	job, err := retention.New(st, c, retention.Config{Keep: time.Hour, Batch: 3, Now: func() time.Time { return now }, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	fromStore, fromCache, err := job.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// ab's messages 1..6 were sent before t0-1h (-77..-62 min); 7 at -59.
	if fromStore != 7 || fromCache != 7 {
		t.Errorf("removed %d from the store and %d from the cache, want 7 and 7", fromStore, fromCache)
	}
	if obs.n != 1 || obs.fromStore != 7 || obs.fromCache != 7 || obs.err != nil {
		t.Errorf("observer heard %+v", obs)
	}
	for _, tc := range []struct {
		conv  domain.ConversationID
		gone  domain.MsgID
		first domain.MsgID
	}{{ab, 6, 7}, {g1, 100, 101}} {
		if g, _ := st.GoneThrough(ctx, tc.conv); g != tc.gone {
			t.Errorf("%s: gone through %d, want %d", tc.conv, g, tc.gone)
		}
		msgs, _, _ := st.After(ctx, tc.conv, 0, 100)
		if len(msgs) == 0 || msgs[0].MsgID != tc.first {
			t.Errorf("%s: the store starts at %v, want %d", tc.conv, msgs, tc.first)
		}
		if _, _, covered, _ := c.After(ctx, tc.conv, tc.gone-1, 100); covered {
			t.Errorf("%s: the cache answers below the floor", tc.conv)
		}
		if msgs, _, covered, _ := c.After(ctx, tc.conv, tc.gone, 100); !covered || len(msgs) == 0 || msgs[0].MsgID != tc.first {
			t.Errorf("%s: the cache after the floor = %v covered %v, want from %d", tc.conv, msgs, covered, tc.first)
		}
	}
	// Two hours on, everything is old: ab 7..25 and g1 101.
	now = now.Add(2 * time.Hour)
	if fromStore, _, _ := job.RunOnce(ctx); fromStore != 20 {
		t.Errorf("the second run removed %d, want 20", fromStore)
	}
	if fromStore, fromCache, _ := job.RunOnce(ctx); fromStore != 0 || fromCache != 0 {
		t.Errorf("a run with nothing old removed %d and %d", fromStore, fromCache)
	}
}

func TestKeepZeroKeepsEverything(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	if err := st.Save(ctx, msg(ab, 1, time.Unix(0, 0))); err != nil {
		t.Fatal(err)
	}
	job, err := retention.New(st, nil, retention.Config{})
	if err != nil {
		t.Fatal(err)
	}
	job.Run(ctx) // returns at once
	if n, _, err := job.RunOnce(ctx); n != 0 || err != nil {
		t.Errorf("RunOnce = %d, %v; want nothing", n, err)
	}
	if msgs, _, _ := st.After(ctx, ab, 0, 10); len(msgs) != 1 {
		t.Errorf("the store holds %d messages, want 1", len(msgs))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  retention.Config
		ok   bool
	}{
		{"defaults", retention.Config{Keep: time.Hour}, true},
		{"negative keep", retention.Config{Keep: -time.Second}, false},
		{"negative interval", retention.Config{Interval: -time.Second}, false},
		{"negative batch", retention.Config{Batch: -1}, false},
		{"batch too large", retention.Config{Batch: retention.MaxBatch + 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := retention.New(store.NewMemory(), nil, tc.cfg)
			if (err == nil) != tc.ok {
				t.Errorf("New: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// Run stops when its context ends.
func TestRunStopsWithItsContext(t *testing.T) {
	job, err := retention.New(store.NewMemory(), nil, retention.Config{Keep: time.Hour, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { job.Run(ctx); close(done) }()
	cancel()
	<-done
}
