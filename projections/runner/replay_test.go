package runner_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/pebble/pebbletest"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/runner/sourcetest"
	"github.com/parley-chat/parley/projections/store"
)

// embeddedModels are a single node's durable read models in db, with the
// trackers a start loads from their stored progress.
type embeddedModels struct {
	specs []runner.Spec
	store *store.Pebble
	convs *conversations.Pebble
}

func openEmbeddedModels(t *testing.T, db *pebble.DB) embeddedModels {
	t.Helper()
	tracker := func(name string) *progress.Tracker {
		tr, err := progress.New(context.Background(), progress.NewPebble(db, name), progress.Config{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	m := embeddedModels{store: store.NewPebble(db, store.Name), convs: conversations.NewPebble(db, conversations.Name)}
	m.specs = []runner.Spec{
		{Name: groups.Name, Projection: groups.NewPebble(db, groups.Name), Tracker: tracker(groups.Name)},
		{Name: store.Name, Projection: m.store, Tracker: tracker(store.Name)},
		{Name: conversations.Name, Projection: m.convs, Tracker: tracker(conversations.Name)},
	}
	return m
}

// run feeds the models the log from their stored progress until every one
// has applied it all, then stops, as a crash would: nothing saves the
// progress that batches of messages left behind.
func (m embeddedModels) run(t *testing.T, log *sourcetest.Memory, partitions []int32) {
	t.Helper()
	from := map[int32]int64{}
	for _, p := range partitions {
		from[p] = m.specs[0].Tracker.Next(p)
		for _, s := range m.specs {
			from[p] = min(from[p], s.Tracker.Next(p))
		}
	}
	r := runner.New(runner.Config{Epoch: 1, Logger: quiet()}, runner.Reader{Name: "embedded", Source: log.Range(partitions, from, nil), Specs: m.specs})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	for _, s := range m.specs {
		if err := s.Tracker.(*progress.Tracker).WaitForAll(wctx, log.Ends()); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
}

// What a start after a crash applies again — the messages after the
// stored progress that batches of messages left behind — changes nothing:
// every message is counted once, in the history and in the conversation
// index, and a read still forces its progress out.
func TestMessagesAppliedAgainAfterACrashChangeNothing(t *testing.T) {
	defer func(every time.Duration) { progress.MarkEvery = every }(progress.MarkEvery)
	progress.MarkEvery = time.Hour // every batch after a partition's first leaves its progress behind

	db := pebbletest.Open(t)
	log := sourcetest.NewMemory()
	log.MaxBatch = 2
	partitions := []int32{0, 1}
	accounts := []string{"ann", "bob", "cat", "dan"}
	readAt := int64(-1)
	for i := range 60 {
		from, to := accounts[i%4], accounts[(i/4+i+1)%4]
		if from == to {
			to = accounts[(i+2)%4]
		}
		conv := "d:" + min(from, to) + ":" + max(from, to)
		e := events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
			SenderAccount: from, SenderDevice: "d", Kind: "text", Body: fmt.Sprint("hello ", i), ServerTime: int64(1_700_000_000_000 + i)}
		p := events.PartitionFor(conv, int32(len(partitions)))
		payload, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		log.Append(p, runner.RawRecord{Name: e.EventName(), Payload: payload, Timestamp: time.Now()})
		if i == 30 && p == 0 {
			// bob reads ann's conversation up to its newest message so far
			newest, err := events.MsgID(1, log.Ends()[0]-1)
			if err != nil {
				t.Fatal(err)
			}
			rd := events.ConversationRead{Conversation: "d:ann:bob", Account: "bob", Device: "d", MsgID: int64(newest), At: e.ServerTime}
			payload, err := events.Encode(rd)
			if err != nil {
				t.Fatal(err)
			}
			readAt = log.Ends()[0]
			log.Append(0, runner.RawRecord{Name: rd.EventName(), Payload: payload, Timestamp: time.Now()})
		}
	}

	first := openEmbeddedModels(t, db)
	first.run(t, log, partitions)
	want := lists(t, first.convs, accounts)
	history := histories(t, first.store, want)

	ends := log.Ends()
	for _, name := range []string{groups.Name, store.Name, conversations.Name} {
		stored, err := progress.NewPebble(db, name).Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range partitions {
			if stored[p] >= ends[p] {
				t.Fatalf("%s: stored progress in partition %d is %d, the end: nothing would be applied again", name, p, stored[p])
			}
		}
		if readAt >= 0 && name != groups.Name && stored[0] <= readAt {
			t.Errorf("%s: stored progress in partition 0 is %d, before the read at %d", name, stored[0], readAt)
		}
	}

	again := openEmbeddedModels(t, db)
	again.run(t, log, partitions)
	if got := lists(t, again.convs, accounts); !slices.Equal(got, want) {
		t.Errorf("conversations after applying messages again:\n got %v\nwant %v", got, want)
	}
	if got := histories(t, again.store, want); got != history {
		t.Errorf("history after applying messages again:\n got %s\nwant %s", got, history)
	}
}

// histories is the msgids of every conversation in convs, as one string.
func histories(t *testing.T, s *store.Pebble, convs []conversations.Latest) string {
	t.Helper()
	out := ""
	for _, c := range convs {
		msgs, _, err := s.After(context.Background(), c.Conversation, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out += c.Conversation.String() + ":"
		for _, m := range msgs {
			out += fmt.Sprint(" ", m.MsgID)
		}
		out += "; "
	}
	return out
}

// lists is every account's conversation list, in one comparable form.
func lists(t *testing.T, idx *conversations.Pebble, accounts []string) []conversations.Latest {
	t.Helper()
	var out []conversations.Latest
	for _, a := range accounts {
		page, err := idx.List(context.Background(), domain.AccountID(a), nil, conversations.Query{Limit: 100})
		l := page.Entries
		if err != nil {
			t.Fatal(err)
		}
		for i := range l {
			l[i].Time = l[i].Time.UTC()
		}
		out = append(out, l...)
	}
	return out
}
