package push_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/push"
)

// recorder is a Deliverer that keeps every push.
type recorder struct {
	mu     sync.Mutex
	pushes []push.Push
}

func (r *recorder) Deliver(p push.Push) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes = append(r.pushes, p)
	return nil
}

func (r *recorder) all() []push.Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]push.Push(nil), r.pushes...)
}

// members is a fixed group directory that records its calls and can fail.
type members struct {
	mu     sync.Mutex
	groups map[domain.GroupID][]domain.AccountID
	err    error
	calls  []call
}

type call struct {
	group  domain.GroupID
	offset int64
}

func (m *members) MembersAt(_ context.Context, g domain.GroupID, r projections.Record) ([]domain.AccountID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, call{g, r.Position.Offset})
	if m.err != nil {
		return nil, m.err
	}
	return append([]domain.AccountID(nil), m.groups[g]...), nil
}

func (m *members) Changed(domain.GroupID) {}

func (m *members) setErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

func sent(conv, from string, offset int64) projections.Record {
	return projections.Record{
		Event: events.MessageSent{
			MessageID: uuid.NewString(), ClientMsgID: uuid.NewString(), Conversation: conv,
			SenderAccount: from, SenderDevice: "phone", Kind: "text", Body: "hi", ServerTime: 1000,
		},
		Position: events.Position{Partition: 0, Offset: offset},
		MsgID:    domain.MsgID(1<<48 | offset),
	}
}

type expect struct {
	conv       string
	msgid      domain.MsgID
	prev       domain.MsgID
	recipients []domain.AccountID
}

func TestProjectionPushes(t *testing.T) {
	dir := &members{groups: map[domain.GroupID][]domain.AccountID{
		"team":  {"alice", "bob", "carol"},
		"empty": nil,
	}}
	const e = 1 << 48
	tests := []struct {
		name    string
		records []projections.Record
		want    []expect
	}{
		{
			name:    "direct message goes to both accounts",
			records: []projections.Record{sent("d:alice:bob", "bob", 5)},
			want:    []expect{{"d:alice:bob", e | 5, 0, []domain.AccountID{"alice", "bob"}}},
		},
		{
			name:    "note to self goes to the one account once",
			records: []projections.Record{sent("d:alice:alice", "alice", 1)},
			want:    []expect{{"d:alice:alice", e | 1, 0, []domain.AccountID{"alice"}}},
		},
		{
			name:    "group message goes to the members",
			records: []projections.Record{sent("g:team", "bob", 3)},
			want:    []expect{{"g:team", e | 3, 0, []domain.AccountID{"alice", "bob", "carol"}}},
		},
		{
			name:    "group without members",
			records: []projections.Record{sent("g:empty", "bob", 3)},
			want:    []expect{{"g:empty", e | 3, 0, nil}},
		},
		{
			name: "prev chains per conversation",
			records: []projections.Record{
				sent("d:alice:bob", "alice", 1),
				sent("g:team", "carol", 2),
				sent("d:alice:bob", "bob", 4), // offset 3 went to another partition's conversation: a gap is fine
				sent("g:team", "alice", 5),
				sent("d:alice:bob", "alice", 6),
			},
			want: []expect{
				{"d:alice:bob", e | 1, 0, []domain.AccountID{"alice", "bob"}},
				{"g:team", e | 2, 0, []domain.AccountID{"alice", "bob", "carol"}},
				{"d:alice:bob", e | 4, e | 1, []domain.AccountID{"alice", "bob"}},
				{"g:team", e | 5, e | 2, []domain.AccountID{"alice", "bob", "carol"}},
				{"d:alice:bob", e | 6, e | 4, []domain.AccountID{"alice", "bob"}},
			},
		},
		{
			name: "a redelivered record is not pushed twice",
			records: func() []projections.Record {
				r1, r2 := sent("d:alice:bob", "alice", 1), sent("d:alice:bob", "bob", 2)
				return []projections.Record{r1, r1, r2, r2, r1}
			}(),
			want: []expect{
				{"d:alice:bob", e | 1, 0, []domain.AccountID{"alice", "bob"}},
				{"d:alice:bob", e | 2, e | 1, []domain.AccountID{"alice", "bob"}},
			},
		},
		{
			name: "other events are not pushed",
			records: []projections.Record{
				{Event: events.GroupCreated{Group: "team", Owner: "alice"}, MsgID: e | 1},
				{Event: events.GroupMembersAdded{Group: "team", Accounts: []string{"dave"}}, MsgID: e | 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &recorder{}
			p := push.NewProjection(out, dir)
			for _, r := range tt.records {
				if err := p.Apply(context.Background(), r); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
			got := out.all()
			if len(got) != len(tt.want) {
				t.Fatalf("%d pushes, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Message.Conversation.String() != w.conv || g.Message.MsgID != w.msgid || g.Prev != w.prev {
					t.Errorf("push %d = %s msgid %d prev %d, want %s msgid %d prev %d",
						i, g.Message.Conversation, g.Message.MsgID, g.Prev, w.conv, w.msgid, w.prev)
				}
				if !reflect.DeepEqual(g.Recipients, w.recipients) {
					t.Errorf("push %d recipients = %v, want %v", i, g.Recipients, w.recipients)
				}
			}
		})
	}
}

func TestProjectionPushCarriesTheMessage(t *testing.T) {
	out := &recorder{}
	p := push.NewProjection(out, &members{})
	r := sent("d:alice:bob", "bob", 7)
	if err := p.Apply(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	want, err := r.Event.(events.MessageSent).Message(r.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	got := out.all()
	if len(got) != 1 || !reflect.DeepEqual(got[0].Message, want) {
		t.Fatalf("pushes = %+v, want one of %+v", got, want)
	}
	if got[0].Message.Sender != (domain.Sender{Account: "bob", Device: "phone"}) {
		t.Errorf("sender = %+v", got[0].Message.Sender)
	}
}

func TestProjectionGroupMembersAsOfTheRecord(t *testing.T) {
	dir := &members{groups: map[domain.GroupID][]domain.AccountID{"team": {"alice"}}}
	p := push.NewProjection(&recorder{}, dir)
	if err := p.Apply(context.Background(), sent("g:team", "alice", 42)); err != nil {
		t.Fatal(err)
	}
	if want := []call{{"team", 42}}; !reflect.DeepEqual(dir.calls, want) {
		t.Errorf("MembersAt calls = %v, want %v", dir.calls, want)
	}
	// Direct conversations do not consult the directory.
	if err := p.Apply(context.Background(), sent("d:alice:bob", "alice", 43)); err != nil {
		t.Fatal(err)
	}
	if len(dir.calls) != 1 {
		t.Errorf("MembersAt called for a direct message: %v", dir.calls)
	}
}

// When members cannot be resolved the record fails (and is redelivered);
// nothing is pushed, and the redelivery pushes it with the right prev.
func TestProjectionMembersFailureIsRetried(t *testing.T) {
	out := &recorder{}
	dir := &members{groups: map[domain.GroupID][]domain.AccountID{"team": {"alice", "bob"}}}
	p := push.NewProjection(out, dir)
	ctx := context.Background()
	first, second := sent("g:team", "alice", 1), sent("g:team", "bob", 2)
	if err := p.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("directory down")
	dir.setErr(boom)
	if err := p.Apply(ctx, second); !errors.Is(err, boom) {
		t.Fatalf("Apply = %v, want it to wrap %v", err, boom)
	}
	if n := len(out.all()); n != 1 {
		t.Fatalf("%d pushes after a failure, want 1", n)
	}
	dir.setErr(nil)
	if err := p.Apply(ctx, second); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got := out.all()
	if len(got) != 2 || got[1].Message.MsgID != second.MsgID || got[1].Prev != first.MsgID {
		t.Fatalf("pushes = %+v, want the retried one with prev %d", got, first.MsgID)
	}
}

func TestProjectionPoisonIsNotPushed(t *testing.T) {
	out := &recorder{}
	p := push.NewProjection(out, &members{})
	r := sent("d:alice:bob", "alice", 1)
	e := r.Event.(events.MessageSent)
	e.Body = "\xff"
	r.Event = e
	var poison *projections.PoisonError
	if err := p.Apply(context.Background(), r); !errors.As(err, &poison) {
		t.Fatalf("Apply = %v, want *PoisonError", err)
	}
	if n := len(out.all()); n != 0 {
		t.Errorf("%d pushes of a poison record", n)
	}
	// The next good record of the conversation has no known prev.
	good := sent("d:alice:bob", "alice", 2)
	if err := p.Apply(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if got := out.all(); len(got) != 1 || got[0].Prev != 0 {
		t.Errorf("pushes = %+v, want one with prev 0", got)
	}
}

// resolver is a Resolver whose resolved deliverer records, apart from the
// recorder, which pushes went through it.
type resolver struct {
	recorder
	mu       sync.Mutex
	resolved [][]domain.AccountID
	through  recorder
}

func (r *resolver) Resolve(_ context.Context, accounts []domain.AccountID) (push.Deliverer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolved = append(r.resolved, accounts)
	return &r.through, nil
}

// Prepared for a batch, the pushes of its direct messages go out, in log
// order, through what the Resolver looked up once for all their accounts;
// the others go out as before.
func TestProjectionPreparesABatch(t *testing.T) {
	out := &resolver{}
	dir := &members{groups: map[domain.GroupID][]domain.AccountID{"team": {"alice", "bob"}}}
	p := push.NewProjection(out, dir)
	recs := []projections.Record{
		sent("d:alice:bob", "alice", 1),
		sent("g:team", "bob", 2),
		sent("d:bob:carol", "carol", 3),
		{Event: events.MessageSent{Conversation: "not a conversation"}, Position: events.Position{Offset: 4}},
	}
	ctx := p.Prepare(context.Background(), recs)
	for _, r := range recs {
		_ = p.Apply(ctx, r) // the poison record fails alone
	}
	if want := [][]domain.AccountID{{"alice", "bob", "carol"}}; !reflect.DeepEqual(out.resolved, want) {
		t.Errorf("resolved %v, want %v", out.resolved, want)
	}
	var got []string
	for _, ps := range out.through.all() {
		got = append(got, ps.Message.Conversation.String())
	}
	if want := []string{"d:alice:bob", "g:team", "d:bob:carol"}; !reflect.DeepEqual(got, want) {
		t.Errorf("pushed through the resolved deliverer: %v, want %v", got, want)
	}
	// Without a preparation, every push goes out as before.
	p2 := push.NewProjection(out, dir)
	if err := p2.Apply(context.Background(), sent("d:alice:bob", "alice", 5)); err != nil {
		t.Fatal(err)
	}
	if n := len(out.all()); n != 1 {
		t.Errorf("%d pushes through the deliverer itself, want 1", n)
	}
}
