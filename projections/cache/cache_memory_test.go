package cache

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
)

var (
	ab = domain.DirectConversation("alice", "bob")
	g1 = domain.GroupConversation("g1")
	t0 = time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC)
)

// clock is a settable time source for the cache's retention.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newMemory(c *clock) *Memory {
	m := NewMemory(Retention)
	m.now = c.Now
	return m
}

func msgAt(conv domain.ConversationID, id domain.MsgID, at time.Time) domain.Message {
	return domain.Message{
		ID: uuid.New(), MsgID: id, ClientMsgID: fmt.Sprintf("c%d", id),
		Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: conv,
		Kind: "text", Body: fmt.Sprint(id), ServerTime: at,
	}
}

type add struct {
	id    domain.MsgID
	age   time.Duration // how long before the clock's now the message was sent
	floor domain.MsgID
}

type read struct {
	after       domain.MsgID
	limit       int
	want        []domain.MsgID
	wantMore    bool
	wantCovered bool
}

func msgIDs(ms []domain.Message) []domain.MsgID {
	out := []domain.MsgID{}
	for _, m := range ms {
		out = append(out, m.MsgID)
	}
	return out
}

func check(t *testing.T, c Cache, conv domain.ConversationID, r read) {
	t.Helper()
	limit := r.limit
	if limit == 0 {
		limit = 100
	}
	ms, more, covered, err := c.After(context.Background(), conv, r.after, limit)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if covered != r.wantCovered {
		t.Errorf("After(%d): covered = %v (with %v), want %v", r.after, covered, msgIDs(ms), r.wantCovered)
		return
	}
	if !covered {
		if len(ms) != 0 || more {
			t.Errorf("After(%d): not covered but returned %v more %v", r.after, msgIDs(ms), more)
		}
		return
	}
	if got := msgIDs(ms); !reflect.DeepEqual(got, r.want) || more != r.wantMore {
		t.Errorf("After(%d, %d) = %v more %v, want %v more %v", r.after, limit, got, more, r.want, r.wantMore)
	}
}

func TestMemoryCoverage(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name  string
		adds  []add
		reads []read
	}{
		{
			name:  "unknown conversation is not covered",
			reads: []read{{after: 0}, {after: 1 << 50}},
		},
		{
			name: "floor is where coverage starts",
			adds: []add{{id: 10, floor: 5}},
			reads: []read{
				{after: 4},
				{after: 5, want: []domain.MsgID{10}, wantCovered: true},
				{after: 9, want: []domain.MsgID{10}, wantCovered: true},
				{after: 10, want: []domain.MsgID{}, wantCovered: true},
				{after: 1 << 40, want: []domain.MsgID{}, wantCovered: true},
			},
		},
		{
			name: "floor at the message is clamped below it",
			adds: []add{{id: 10, floor: 10}},
			reads: []read{
				{after: 8},
				{after: 9, want: []domain.MsgID{10}, wantCovered: true},
			},
		},
		{
			name: "floor above the message is clamped below it",
			adds: []add{{id: 10, floor: 50}},
			reads: []read{
				{after: 8},
				{after: 9, want: []domain.MsgID{10}, wantCovered: true},
			},
		},
		{
			name: "floor of a known conversation is ignored",
			adds: []add{{id: 10, floor: 5}, {id: 20, floor: 15}, {id: 30, floor: 0}},
			reads: []read{
				{after: 4},
				{after: 5, want: []domain.MsgID{10, 20, 30}, wantCovered: true},
				{after: 15, want: []domain.MsgID{20, 30}, wantCovered: true},
			},
		},
		{
			name: "a message at or below coverage is not added",
			adds: []add{{id: 10, floor: 5}, {id: 3}, {id: 5}},
			reads: []read{
				{after: 2},
				{after: 5, want: []domain.MsgID{10}, wantCovered: true},
			},
		},
		{
			name:  "adding again changes nothing",
			adds:  []add{{id: 10, floor: 5}, {id: 11}, {id: 10}, {id: 11, floor: 1}},
			reads: []read{{after: 5, want: []domain.MsgID{10, 11}, wantCovered: true}},
		},
		{
			name:  "out of order adds above coverage are kept in order",
			adds:  []add{{id: 10, floor: 5}, {id: 30}, {id: 20}, {id: 8}},
			reads: []read{{after: 5, want: []domain.MsgID{8, 10, 20, 30}, wantCovered: true}},
		},
		{
			name: "paging with more",
			adds: []add{{id: 10, floor: 0}, {id: 20}, {id: 30}, {id: 40}},
			reads: []read{
				{after: 0, limit: 2, want: []domain.MsgID{10, 20}, wantMore: true, wantCovered: true},
				{after: 20, limit: 2, want: []domain.MsgID{30, 40}, wantCovered: true},
				{after: 25, limit: 1, want: []domain.MsgID{30}, wantMore: true, wantCovered: true},
				{after: 40, limit: 1, want: []domain.MsgID{}, wantCovered: true},
			},
		},
		{
			name: "a message older than the retention only moves coverage",
			adds: []add{{id: 10, age: 8 * day, floor: 5}},
			reads: []read{
				{after: 5},
				{after: 9},
				{after: 10, want: []domain.MsgID{}, wantCovered: true},
			},
		},
		{
			name: "an old message drops what is cached before it",
			adds: []add{{id: 10, age: 2 * day, floor: 5}, {id: 12, age: 8 * day}, {id: 14}},
			reads: []read{
				{after: 5},
				{after: 11},
				{after: 12, want: []domain.MsgID{14}, wantCovered: true},
			},
		},
		{
			name: "a message just inside the retention is kept",
			adds: []add{{id: 10, age: Retention - time.Second, floor: 9}},
			reads: []read{
				{after: 9, want: []domain.MsgID{10}, wantCovered: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{now: t0}
			c := newMemory(clk)
			for _, a := range tt.adds {
				if err := c.Add(context.Background(), msgAt(ab, a.id, t0.Add(-a.age)), a.floor); err != nil {
					t.Fatalf("Add(%d): %v", a.id, err)
				}
			}
			for _, r := range tt.reads {
				check(t, c, ab, r)
			}
			// Nothing leaks into another conversation.
			check(t, c, g1, read{after: 0})
		})
	}
}

func TestMemoryTrim(t *testing.T) {
	day := 24 * time.Hour
	clk := &clock{now: t0}
	c := newMemory(clk)
	ctx := context.Background()
	for _, a := range []struct {
		conv domain.ConversationID
		id   domain.MsgID
		at   time.Time
	}{
		{ab, 1, t0.Add(-3 * day)},
		{ab, 2, t0.Add(-2 * day)},
		{ab, 3, t0.Add(-1 * day)},
		{g1, 7, t0.Add(-6 * day)},
	} {
		if err := c.Add(ctx, msgAt(a.conv, a.id, a.at), 0); err != nil {
			t.Fatal(err)
		}
	}
	check(t, c, ab, read{after: 0, want: []domain.MsgID{1, 2, 3}, wantCovered: true})

	// Five days later the cutoff is t0-2d: message 1 and g1's 7 are out.
	clk.now = t0.Add(5 * day)
	c.Trim()
	check(t, c, ab, read{after: 0})
	check(t, c, ab, read{after: 1, want: []domain.MsgID{2, 3}, wantCovered: true})
	check(t, c, g1, read{after: 6})
	check(t, c, g1, read{after: 7, want: []domain.MsgID{}, wantCovered: true})

	// Trimming again at the same time changes nothing.
	c.Trim()
	check(t, c, ab, read{after: 1, want: []domain.MsgID{2, 3}, wantCovered: true})

	// Adding a fresh message also trims what has aged out since.
	clk.now = t0.Add(6*day + time.Hour) // cutoff t0-1d+1h: 2 and 3 are out
	if err := c.Add(ctx, msgAt(ab, 4, clk.now), 0); err != nil {
		t.Fatal(err)
	}
	check(t, c, ab, read{after: 2})
	check(t, c, ab, read{after: 3, want: []domain.MsgID{4}, wantCovered: true})
}

// After returns a copy: the caller cannot change the cache through it.
func TestMemoryAfterReturnsACopy(t *testing.T) {
	clk := &clock{now: t0}
	c := newMemory(clk)
	ctx := context.Background()
	if err := c.Add(ctx, msgAt(ab, 1, t0), 0); err != nil {
		t.Fatal(err)
	}
	ms, _, _, _ := c.After(ctx, ab, 0, 10)
	ms[0].Body = "changed"
	again, _, _, _ := c.After(ctx, ab, 0, 10)
	if again[0].Body != "1" {
		t.Errorf("cache changed through a returned page: %q", again[0].Body)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	c := NewMemory(Retention)
	ctx := context.Background()
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 1; i <= 100; i++ {
				_ = c.Add(ctx, msgAt(ab, domain.MsgID(w*1000+i), time.Now()), 0)
				_, _, _, _ = c.After(ctx, ab, 0, 10)
				c.Trim()
			}
		}(w)
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	ms, _, covered, _ := c.After(ctx, ab, 0, 1000)
	if !covered || len(ms) != 400 {
		t.Errorf("covered %v with %d messages, want true with 400", covered, len(ms))
	}
}

// A bounded cache forgets whole conversations past its budget, and a
// forgotten conversation reads as not covered: sync asks the store.
func TestBoundedMemoryForgetsWholeConversations(t *testing.T) {
	c := NewBoundedMemory(Retention, 64<<10)
	ctx := context.Background()
	body := strings.Repeat("x", 1000)
	for i := 0; i < 200; i++ {
		conv := domain.DirectConversation("alice", domain.AccountID(fmt.Sprint("peer", i)))
		for j := 1; j <= 3; j++ {
			m := domain.Message{ID: uuid.New(), MsgID: domain.MsgID(i*10 + j), Conversation: conv, Body: body, ServerTime: time.Now()}
			if err := c.Add(ctx, m, m.MsgID-1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if b := c.Bytes(); b > 64<<10+4<<10 {
		t.Fatalf("the cache holds %d bytes, over its budget", b)
	}
	covered := 0
	for i := 0; i < 200; i++ {
		conv := domain.DirectConversation("alice", domain.AccountID(fmt.Sprint("peer", i)))
		msgs, _, ok, err := c.After(ctx, conv, domain.MsgID(i*10), 10)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			covered++
			if len(msgs) != 3 {
				t.Fatalf("a covered conversation has %d of its 3 messages", len(msgs))
			}
		}
	}
	if covered == 0 || covered == 200 {
		t.Fatalf("%d of 200 conversations covered", covered)
	}
}

// One conversation alone holds no more than the budget (a busy sender on a
// quiet node): it forgets its oldest messages and answers only after them,
// so that a sync from before goes to the store.
func TestBoundedMemoryTrimsOneBusyConversation(t *testing.T) {
	const budget = 256 << 10
	c := NewBoundedMemory(Retention, budget)
	ctx := context.Background()
	conv := domain.DirectConversation("alice", "bob")
	body := strings.Repeat("<", 16<<10)
	const n = 200
	for i := 1; i <= n; i++ {
		m := domain.Message{ID: uuid.New(), MsgID: domain.MsgID(i), Conversation: conv, Body: body, ServerTime: time.Now()}
		if err := c.Add(ctx, m, m.MsgID-1); err != nil {
			t.Fatal(err)
		}
		if b := c.Bytes(); b > budget {
			t.Fatalf("after %d messages the cache holds %d bytes, over its budget of %d", i, b, budget)
		}
	}
	if _, _, ok, err := c.After(ctx, conv, 0, 10); err != nil || ok {
		t.Fatalf("After(0) covered %v (%v): the oldest messages are gone, the store must answer", ok, err)
	}
	msgs, _, ok, err := c.After(ctx, conv, n-3, 10)
	if err != nil || !ok || len(msgs) != 3 || msgs[2].MsgID != n {
		t.Fatalf("After(%d) = %d messages, covered %v (%v); want the newest 3", n-3, len(msgs), ok, err)
	}
}
