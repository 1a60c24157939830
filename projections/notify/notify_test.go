package notify_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/progress"
)

type members map[domain.GroupID][]domain.AccountID

func (m members) MembersAt(_ context.Context, g domain.GroupID, _ projections.Record) ([]domain.AccountID, error) {
	return m[g], nil
}
func (members) Changed(domain.GroupID) {}

type online map[domain.AccountID]bool

func (o online) HasOnline(_ context.Context, a domain.AccountID) (bool, error) { return o[a], nil }

type unread struct{}

func (unread) ReadState(_ context.Context, _ domain.ConversationID, a domain.AccountID) (conversations.ReadState, error) {
	return conversations.ReadState{Unread: int64(len(a))}, nil
}

type collect struct {
	mu    sync.Mutex
	calls [][]notify.Notification
}

func (c *collect) Deliver(_ context.Context, ns []notify.Notification) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, slices.Clone(ns))
	return nil
}

func (c *collect) accounts() []string {
	var out []string
	for _, call := range c.calls {
		for _, n := range call {
			out = append(out, n.Account)
		}
	}
	slices.Sort(out)
	return out
}

func sent(offset int64, conv domain.ConversationID, from string) projections.Record {
	return projections.Record{Event: events.MessageSent{MessageID: uuid.NewString(), ClientMsgID: fmt.Sprint("c", offset),
		Conversation: conv.String(), SenderAccount: from, SenderDevice: "phone", Kind: "text", Body: "hello", ServerTime: 1_795_000_000_000},
		Position: events.Position{Partition: 0, Offset: offset}, MsgID: domain.MsgID(offset + 1)}
}

func TestRecipients(t *testing.T) {
	now := time.Now()
	g := domain.GroupID("g1")
	gconv := domain.GroupConversation(g)
	for _, tc := range []struct {
		name   string
		rec    projections.Record
		online online
		mute   map[domain.AccountID]time.Time
		want   []string
	}{
		{"direct: the peer, not the sender", sent(0, domain.DirectConversation("alice", "bob"), "alice"), nil, nil, []string{"bob"}},
		{"to oneself: nobody", sent(0, domain.DirectConversation("alice", "alice"), "alice"), nil, nil, nil},
		{"direct, peer online: nobody", sent(0, domain.DirectConversation("alice", "bob"), "alice"), online{"bob": true}, nil, nil},
		{"group: the offline members but the sender", sent(0, gconv, "alice"), online{"carol": true}, nil, []string{"bob", "dave"}},
		{"group: muted forever, and until later", sent(0, gconv, "alice"), nil,
			map[domain.AccountID]time.Time{"bob": {}, "carol": now.Add(time.Hour)}, []string{"dave"}},
		{"group: a mute that ended", sent(0, gconv, "alice"), nil,
			map[domain.AccountID]time.Time{"bob": now.Add(-time.Minute)}, []string{"bob", "carol", "dave"}},
		{"not a message", projections.Record{Event: events.GroupCreated{Group: "g2", Owner: "alice"}}, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mutes := notify.NewMemoryMutes()
			for a, until := range tc.mute {
				if err := mutes.Mute(context.Background(), a, gconv, until); err != nil {
					t.Fatal(err)
				}
			}
			out := &collect{}
			p := notify.NewProjection(notify.Config{Members: members{g: {"alice", "bob", "carol", "dave"}}, Presence: tc.online,
				Mutes: mutes, Unread: unread{}, UnreadProgress: applied(), Out: out})
			if err := p.ApplyBatch(context.Background(), []projections.Record{tc.rec}); err != nil {
				t.Fatal(err)
			}
			if got := out.accounts(); !slices.Equal(got, tc.want) {
				t.Fatalf("notified %v, want %v", got, tc.want)
			}
		})
	}
}

// applied is a conversation index's progress that holds everything.
func applied() *progress.Tracker {
	tr := progress.NewMemory()
	tr.Advance(0, 1<<40)
	return tr
}

// A batch for large groups hands its notifications over in bounded runs,
// each message's whole.
func TestLargeBatchesAreHandedOverInRuns(t *testing.T) {
	g := domain.GroupID("big")
	var all []domain.AccountID
	for i := range 300 {
		all = append(all, domain.AccountID(fmt.Sprint("m", i)))
	}
	out := &collect{}
	p := notify.NewProjection(notify.Config{Members: members{g: all}, Presence: online{}, Mutes: notify.NewMemoryMutes(),
		Unread: unread{}, UnreadProgress: applied(), Out: out})
	recs := []projections.Record{sent(0, domain.GroupConversation(g), "m0"), sent(1, domain.GroupConversation(g), "m1"), sent(2, domain.GroupConversation(g), "m2")}
	if err := p.ApplyBatch(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range out.calls {
		if len(c) > 299+255 {
			t.Errorf("a run of %d notifications", len(c))
		}
		total += len(c)
	}
	if len(out.calls) != 3 || total != 3*299 {
		t.Fatalf("%d runs, %d notifications; want 3 runs of 299", len(out.calls), total)
	}
}

// Routes: a device with a route is online; in a cluster only on an
// instance that is alive.
func TestRoutesPresence(t *testing.T) {
	ctx := context.Background()
	table := routes.NewMemory()
	if _, err := table.Claim(ctx, domain.NewUniqueID("bob", "phone"), "10.0.0.1:8080", false); err != nil {
		t.Fatal(err)
	}
	check := func(r notify.Routes, a domain.AccountID, want bool) {
		t.Helper()
		got, err := r.HasOnline(ctx, a)
		if err != nil || got != want {
			t.Fatalf("HasOnline(%s) with CheckAlive %v: %v %v, want %v", a, r.CheckAlive, got, err, want)
		}
	}
	check(notify.Routes{Table: table}, "bob", true)
	check(notify.Routes{Table: table}, "carol", false)
	check(notify.Routes{Table: table, CheckAlive: true}, "bob", false) // its instance never beat
	if err := table.Beat(ctx, "10.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	check(notify.Routes{Table: table, CheckAlive: true}, "bob", true)
	if err := table.Release(ctx, domain.NewUniqueID("bob", "phone"), "10.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	check(notify.Routes{Table: table}, "bob", false)
}

func TestPreview(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		cut        bool
	}{
		{"", "", false},
		{"short", "short", false},
		{string(make([]rune, notify.PreviewRunes)), string(make([]rune, notify.PreviewRunes)), false},
		{strings.Repeat("€", notify.PreviewRunes+1), strings.Repeat("€", notify.PreviewRunes), true},
	} {
		got, cut := notify.Preview(tc.body)
		if got != tc.want || cut != tc.cut {
			t.Errorf("Preview of %d bytes: %d bytes, cut %v; want %d bytes, cut %v", len(tc.body), len(got), cut, len(tc.want), tc.cut)
		}
	}
}
