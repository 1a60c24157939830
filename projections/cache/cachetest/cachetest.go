// Package cachetest is the contract every cache.Cache adapter must pass.
// Run it from each adapter's tests with a constructor that returns an empty
// cache on the given clock:
//
//	func TestMemoryContract(t *testing.T) {
//		cachetest.Run(t, func(t *testing.T, now func() time.Time) cache.Cache {
//			return cache.NewMemoryWithClock(cache.Retention, now)
//		})
//	}
//
// The cache must keep cache.Retention. Msgids are taken from log epoch 1
// (1<<48 and up), so an adapter that loses precision on them fails.
package cachetest

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/cache"
)

// NewCache returns an empty cache whose retention cutoff follows now.
type NewCache func(t *testing.T, now func() time.Time) cache.Cache

var (
	ab = domain.DirectConversation("alice", "bob")
	ac = domain.DirectConversation("alice", "carol")
	g1 = domain.GroupConversation("g1")
	// t0 is a whole second, so every server time is exact in milliseconds.
	t0 = time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC)
)

const day = 24 * time.Hour

// base is the first msgid of log epoch 1.
const base = domain.MsgID(1 << 48)

// id is the msgid at offset n of epoch 1.
func id(n int64) domain.MsgID { return base + domain.MsgID(n) }

// Clock is a settable time source, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to at.
func (c *Clock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

func msgAt(conv domain.ConversationID, msgid domain.MsgID, at time.Time) domain.Message {
	return domain.Message{
		ID: uuid.New(), MsgID: msgid, ClientMsgID: fmt.Sprintf("c%d", msgid),
		Sender: domain.Sender{Account: "alice", Device: "phone"}, Conversation: conv,
		Kind: "text", Body: fmt.Sprint(msgid), ServerTime: at,
	}
}

type add struct {
	conv  domain.ConversationID // ab when zero
	id    domain.MsgID
	age   time.Duration // how long before the clock's now the message was sent
	floor domain.MsgID
}

type read struct {
	conv        domain.ConversationID // ab when zero
	after       domain.MsgID
	limit       int // 100 when zero and !zeroLimit
	zeroLimit   bool
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

func apply(t *testing.T, c cache.Cache, clk *Clock, adds []add) {
	t.Helper()
	for _, a := range adds {
		conv := a.conv
		if conv.IsZero() {
			conv = ab
		}
		if err := c.Add(t.Context(), msgAt(conv, a.id, clk.Now().Add(-a.age)), a.floor); err != nil {
			t.Fatalf("Add(%s, %d): %v", conv, a.id, err)
		}
	}
}

func check(t *testing.T, c cache.Cache, r read) []domain.Message {
	t.Helper()
	conv := r.conv
	if conv.IsZero() {
		conv = ab
	}
	limit := r.limit
	if limit == 0 && !r.zeroLimit {
		limit = 100
	}
	ms, more, covered, err := c.After(t.Context(), conv, r.after, limit)
	if err != nil {
		t.Fatalf("After(%s, %d): %v", conv, r.after, err)
	}
	if covered != r.wantCovered {
		t.Errorf("After(%s, %d): covered = %v (with %v), want %v", conv, r.after, covered, msgIDs(ms), r.wantCovered)
		return nil
	}
	if !covered {
		if len(ms) != 0 || more {
			t.Errorf("After(%s, %d): not covered but returned %v more %v", conv, r.after, msgIDs(ms), more)
		}
		return nil
	}
	want := r.want
	if want == nil {
		want = []domain.MsgID{}
	}
	if got := msgIDs(ms); !reflect.DeepEqual(got, want) || more != r.wantMore {
		t.Errorf("After(%s, %d, %d) = %v more %v, want %v more %v", conv, r.after, limit, got, more, want, r.wantMore)
	}
	for _, m := range ms {
		if m.Conversation != conv {
			t.Errorf("After(%s): message %d belongs to %s", conv, m.MsgID, m.Conversation)
		}
	}
	return ms
}

type scenario struct {
	name  string
	adds  []add
	reads []read
}

func runScenarios(t *testing.T, newCache NewCache, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			clk := &Clock{now: t0}
			c := newCache(t, clk.Now)
			apply(t, c, clk, sc.adds)
			for _, r := range sc.reads {
				check(t, c, r)
			}
		})
	}
}

// sameMessage compares everything a cache must keep; server times compare
// as instants, so an adapter may return another location.
func sameMessage(t *testing.T, got, want domain.Message) {
	t.Helper()
	if !got.ServerTime.Equal(want.ServerTime) {
		t.Errorf("message %d: server time %v, want %v", want.MsgID, got.ServerTime, want.ServerTime)
	}
	if !got.EditedAt.Equal(want.EditedAt) {
		t.Errorf("message %d: edited at %v, want %v", want.MsgID, got.EditedAt, want.EditedAt)
	}
	got.ServerTime, want.ServerTime = time.Time{}, time.Time{}
	got.EditedAt, want.EditedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("message %d:\n got %+v\nwant %+v", want.MsgID, got, want)
	}
}

// Run runs the contract against the adapter that newCache makes.
func Run(t *testing.T, newCache NewCache) {
	t.Run("forget what the retention removed", func(t *testing.T) { testForget(t, newCache) })
	t.Run("unknown conversation is not covered", func(t *testing.T) {
		runScenarios(t, newCache, []scenario{{
			name:  "empty cache",
			reads: []read{{after: 0}, {after: id(0)}, {after: id(1 << 40)}},
		}, {
			name:  "another conversation is known",
			adds:  []add{{conv: g1, id: id(1), floor: 0}},
			reads: []read{{after: 0}, {after: id(1)}},
		}})
	})

	t.Run("floor", func(t *testing.T) {
		runScenarios(t, newCache, []scenario{
			{
				name: "the first message's floor is where coverage starts",
				adds: []add{{id: id(10), floor: id(5)}},
				reads: []read{
					{after: id(4)},
					{after: id(5), want: []domain.MsgID{id(10)}, wantCovered: true},
					{after: id(9), want: []domain.MsgID{id(10)}, wantCovered: true},
					{after: id(10), wantCovered: true},
					{after: id(1 << 40), wantCovered: true},
				},
			},
			{
				name: "a floor at the message is clamped below it",
				adds: []add{{id: id(10), floor: id(10)}},
				reads: []read{
					{after: id(8)},
					{after: id(9), want: []domain.MsgID{id(10)}, wantCovered: true},
				},
			},
			{
				name: "a floor above the message is clamped below it",
				adds: []add{{id: id(10), floor: id(50)}},
				reads: []read{
					{after: id(8)},
					{after: id(9), want: []domain.MsgID{id(10)}, wantCovered: true},
				},
			},
			{
				name: "floor 0 covers the whole history",
				adds: []add{{id: id(10), floor: 0}},
				reads: []read{
					{after: 0, want: []domain.MsgID{id(10)}, wantCovered: true},
				},
			},
			{
				name: "msgid 0 clamps the floor to -1",
				adds: []add{{id: 0, floor: 0}, {id: 1}},
				reads: []read{
					{after: -2},
					{after: -1, want: []domain.MsgID{0, 1}, wantCovered: true},
					{after: 0, want: []domain.MsgID{1}, wantCovered: true},
				},
			},
			{
				name: "a known conversation ignores the floor",
				adds: []add{{id: id(10), floor: id(5)}, {id: id(20), floor: id(15)}, {id: id(30), floor: 0}},
				reads: []read{
					{after: id(4)},
					{after: 0},
					{after: id(5), want: []domain.MsgID{id(10), id(20), id(30)}, wantCovered: true},
					{after: id(15), want: []domain.MsgID{id(20), id(30)}, wantCovered: true},
				},
			},
			{
				name: "a message at or below coverage is not added",
				adds: []add{{id: id(10), floor: id(5)}, {id: id(3)}, {id: id(5)}},
				reads: []read{
					{after: id(2)},
					{after: id(5), want: []domain.MsgID{id(10)}, wantCovered: true},
				},
			},
			{
				name:  "out of order adds above coverage are kept in order",
				adds:  []add{{id: id(10), floor: id(5)}, {id: id(30)}, {id: id(20)}, {id: id(8)}},
				reads: []read{{after: id(5), want: []domain.MsgID{id(8), id(10), id(20), id(30)}, wantCovered: true}},
			},
		})
	})

	t.Run("adding again changes nothing", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		first := msgAt(ab, id(10), t0.Add(-time.Hour))
		second := msgAt(ab, id(11), t0)
		for _, m := range []domain.Message{first, second} {
			if err := c.Add(t.Context(), m, id(5)); err != nil {
				t.Fatal(err)
			}
		}
		// A replay of the same messages, and a different message under a
		// taken msgid: the cache keeps what it has.
		changed := first
		changed.Body, changed.ID = "changed", uuid.New()
		for _, m := range []domain.Message{first, second, second, changed} {
			if err := c.Add(t.Context(), m, id(1)); err != nil {
				t.Fatal(err)
			}
		}
		ms := check(t, c, read{after: id(5), want: []domain.MsgID{id(10), id(11)}, wantCovered: true})
		if len(ms) == 2 {
			sameMessage(t, ms[0], first)
			sameMessage(t, ms[1], second)
		}
		check(t, c, read{after: id(4)})
	})

	t.Run("paging", func(t *testing.T) {
		runScenarios(t, newCache, []scenario{{
			name: "with more and msgid gaps",
			adds: []add{{id: id(10), floor: 0}, {id: id(20)}, {id: id(30)}, {id: id(40)}},
			reads: []read{
				{after: 0, limit: 2, want: []domain.MsgID{id(10), id(20)}, wantMore: true, wantCovered: true},
				{after: id(20), limit: 2, want: []domain.MsgID{id(30), id(40)}, wantCovered: true},
				{after: id(25), limit: 1, want: []domain.MsgID{id(30)}, wantMore: true, wantCovered: true},
				{after: id(25), limit: 2, want: []domain.MsgID{id(30), id(40)}, wantCovered: true},
				{after: id(40), limit: 1, wantCovered: true},
				{after: id(39), limit: 1, want: []domain.MsgID{id(40)}, wantCovered: true},
				{after: 0, limit: 4, want: []domain.MsgID{id(10), id(20), id(30), id(40)}, wantCovered: true},
				{after: 0, limit: 3, want: []domain.MsgID{id(10), id(20), id(30)}, wantMore: true, wantCovered: true},
			},
		}, {
			name: "limit 0 only tells whether more follow",
			adds: []add{{id: id(10), floor: 0}, {id: id(20)}},
			reads: []read{
				{after: 0, zeroLimit: true, wantMore: true, wantCovered: true},
				{after: id(20), zeroLimit: true, wantCovered: true},
			},
		}})
	})

	t.Run("retention", func(t *testing.T) {
		runScenarios(t, newCache, []scenario{
			{
				name: "a message older than the retention only moves coverage",
				adds: []add{{id: id(10), age: 8 * day, floor: id(5)}},
				reads: []read{
					{after: id(5)},
					{after: id(9)},
					{after: id(10), wantCovered: true},
				},
			},
			{
				name: "an old message drops what is cached before it",
				adds: []add{{id: id(10), age: 2 * day, floor: id(5)}, {id: id(12), age: 8 * day}, {id: id(14)}},
				reads: []read{
					{after: id(5)},
					{after: id(11)},
					{after: id(12), want: []domain.MsgID{id(14)}, wantCovered: true},
				},
			},
			{
				name: "an old message below what is cached keeps the newer ones",
				adds: []add{{id: id(10), floor: id(5)}, {id: id(20)}, {id: id(8), age: 8 * day}},
				reads: []read{
					{after: id(7)},
					{after: id(8), want: []domain.MsgID{id(10), id(20)}, wantCovered: true},
				},
			},
			{
				name:  "a message just inside the retention is kept",
				adds:  []add{{id: id(10), age: cache.Retention - time.Millisecond, floor: id(9)}},
				reads: []read{{after: id(9), want: []domain.MsgID{id(10)}, wantCovered: true}},
			},
			{
				name:  "a message exactly at the cutoff is kept",
				adds:  []add{{id: id(10), age: cache.Retention, floor: id(9)}},
				reads: []read{{after: id(9), want: []domain.MsgID{id(10)}, wantCovered: true}},
			},
			{
				name:  "a message a millisecond past the cutoff is not",
				adds:  []add{{id: id(10), age: cache.Retention + time.Millisecond, floor: id(9)}},
				reads: []read{{after: id(9)}, {after: id(10), wantCovered: true}},
			},
		})
	})

	t.Run("trimming by time as the clock advances", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		apply(t, c, clk, []add{
			{id: id(1), age: 3 * day, floor: 0},
			{id: id(2), age: 2 * day},
			{id: id(3), age: 1 * day},
			{conv: g1, id: id(7), age: 6 * day, floor: 0},
		})
		check(t, c, read{after: 0, want: []domain.MsgID{id(1), id(2), id(3)}, wantCovered: true})

		// Five days later the cutoff is t0-2d: adding a fresh message trims
		// 1, which is older; 2, sent exactly at the cutoff, stays.
		clk.Set(t0.Add(5 * day))
		apply(t, c, clk, []add{{id: id(4)}})
		check(t, c, read{after: 0})
		check(t, c, read{after: id(1), want: []domain.MsgID{id(2), id(3), id(4)}, wantCovered: true})

		// g1 had no add since, but an add trims it too.
		apply(t, c, clk, []add{{conv: g1, id: id(8)}})
		check(t, c, read{conv: g1, after: id(6)})
		check(t, c, read{conv: g1, after: id(7), want: []domain.MsgID{id(8)}, wantCovered: true})

		// Adding again at the same time trims nothing more.
		apply(t, c, clk, []add{{id: id(4)}})
		check(t, c, read{after: id(1), want: []domain.MsgID{id(2), id(3), id(4)}, wantCovered: true})

		// A day and an hour later 2 and 3 are out, in one add.
		clk.Set(t0.Add(6*day + time.Hour))
		apply(t, c, clk, []add{{id: id(5)}})
		check(t, c, read{after: id(2)})
		check(t, c, read{after: id(3), want: []domain.MsgID{id(4), id(5)}, wantCovered: true})

		// Long enough for everything cached to age out: coverage moves
		// to the highest trimmed msgid, and the new message stays.
		clk.Set(t0.Add(30 * day))
		apply(t, c, clk, []add{{id: id(9)}})
		check(t, c, read{after: id(4)})
		check(t, c, read{after: id(5), want: []domain.MsgID{id(9)}, wantCovered: true})
	})

	t.Run("trimming many messages at once", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		const n = 300
		adds := []add{{id: id(1), age: 3 * day, floor: 0}}
		for i := int64(2); i <= n; i++ {
			adds = append(adds, add{id: id(i), age: 3*day - time.Duration(i)*time.Second})
		}
		apply(t, c, clk, adds)
		// Four days and 200 seconds later, messages 1..199 are older than
		// the cutoff (t0-3d+200s), 200 is exactly at it.
		clk.Set(t0.Add(4*day + 200*time.Second))
		apply(t, c, clk, []add{{id: id(n + 1)}})
		check(t, c, read{after: id(198)})
		ms, more, covered, err := c.After(t.Context(), ab, id(199), 1000)
		if err != nil || !covered || more || len(ms) != n-198 || ms[0].MsgID != id(200) {
			t.Errorf("After(199) = %d messages from %v, more %v, covered %v, err %v; want %d from %d",
				len(ms), msgIDs(ms[:min(1, len(ms))]), more, covered, err, n-198, id(200))
		}
	})

	t.Run("After below coverage is not covered", func(t *testing.T) {
		runScenarios(t, newCache, []scenario{{
			name: "below the floor",
			adds: []add{{id: id(100), floor: id(50)}, {id: id(101)}},
			reads: []read{
				{after: 0},
				{after: id(49)},
				{after: id(50), want: []domain.MsgID{id(100), id(101)}, wantCovered: true},
				{after: id(100), want: []domain.MsgID{id(101)}, wantCovered: true},
			},
		}, {
			name: "an epoch-1 cursor against a conversation covered from epoch 2",
			// Epoch 2's first msgid (offset 0), covered from the end of epoch 1.
			adds: []add{{id: 2 << 48, floor: 2<<48 - 1}},
			reads: []read{
				{after: id(500)},
				{after: 2<<48 - 1, want: []domain.MsgID{2 << 48}, wantCovered: true},
			},
		}})
	})

	t.Run("conversations are kept apart", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		// Msgids of conversations in different partitions may coincide.
		apply(t, c, clk, []add{
			{conv: ab, id: id(10), floor: id(5)},
			{conv: g1, id: id(10), floor: id(9)},
			{conv: ac, id: id(12), floor: 0},
			{conv: ab, id: id(11)},
			{conv: g1, id: id(20), age: 8 * day},
		})
		check(t, c, read{conv: ab, after: id(5), want: []domain.MsgID{id(10), id(11)}, wantCovered: true})
		check(t, c, read{conv: g1, after: id(9)})
		check(t, c, read{conv: g1, after: id(20), wantCovered: true})
		check(t, c, read{conv: ac, after: 0, want: []domain.MsgID{id(12)}, wantCovered: true})
		check(t, c, read{conv: domain.GroupConversation("g2"), after: 0})
	})

	t.Run("a message keeps every field", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		bodies := []string{"", "plain", `with "quotes", \backslash\ and <html>&`, "pipes | in | the | body", "línea\nnueva \u2028 😀", "{\"json\":true}"}
		var want []domain.Message
		for i, body := range bodies {
			m := domain.Message{
				ID: uuid.New(), MsgID: id(int64(i + 1)), ClientMsgID: fmt.Sprintf("client-%d|x", i),
				Sender:       domain.Sender{Account: "a.b_c@d-e", Device: "dev.1"},
				Conversation: g1, Kind: "app/x.y-z_1", Body: body,
				ServerTime: t0.Add(-time.Duration(i)*time.Hour - 123*time.Millisecond),
			}
			want = append(want, m)
			if err := c.Add(t.Context(), m, 0); err != nil {
				t.Fatal(err)
			}
		}
		ms, _, covered, err := c.After(t.Context(), g1, 0, 100)
		if err != nil || !covered || len(ms) != len(want) {
			t.Fatalf("After = %d messages, covered %v, err %v; want %d", len(ms), covered, err, len(want))
		}
		for i := range want {
			sameMessage(t, ms[i], want[i])
		}
	})

	t.Run("the largest msgid is exact", func(t *testing.T) {
		const top = domain.MsgID(31<<48 | (1<<48 - 1)) // epoch 31, last offset: 2^53-1
		runScenarios(t, newCache, []scenario{{
			name: "top",
			adds: []add{{id: top - 2, floor: top - 3}, {id: top - 1}, {id: top}},
			reads: []read{
				{after: top - 4},
				{after: top - 3, want: []domain.MsgID{top - 2, top - 1, top}, wantCovered: true},
				{after: top - 2, want: []domain.MsgID{top - 1, top}, wantCovered: true},
				{after: top - 1, want: []domain.MsgID{top}, wantCovered: true},
				{after: top, wantCovered: true},
			},
		}})
	})

	t.Run("a returned page is a copy", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		apply(t, c, clk, []add{{id: id(1), floor: 0}})
		ms, _, _, err := c.After(t.Context(), ab, 0, 10)
		if err != nil || len(ms) != 1 {
			t.Fatalf("After = %v, %v", ms, err)
		}
		ms[0].Body = "changed"
		again, _, _, _ := c.After(t.Context(), ab, 0, 10)
		if len(again) != 1 || again[0].Body != fmt.Sprint(id(1)) {
			t.Errorf("cache changed through a returned page: %+v", again)
		}
	})

	t.Run("concurrent adds", func(t *testing.T) {
		clk := &Clock{now: t0}
		c := newCache(t, clk.Now)
		const workers, each = 8, 50
		var wg sync.WaitGroup
		errs := make(chan error, 2*workers)
		for w := 0; w < workers; w++ {
			wg.Add(2)
			conv := []domain.ConversationID{ab, g1}[w%2]
			go func() {
				defer wg.Done()
				for i := 1; i <= each; i++ {
					m := msgAt(conv, id(int64(w*1000+i)), t0)
					if err := c.Add(t.Context(), m, 0); err != nil {
						errs <- err
						return
					}
				}
			}()
			// Readers see pages in strict msgid order, never twice the same.
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					ms, _, covered, err := c.After(t.Context(), conv, 0, 1000)
					if err != nil {
						errs <- err
						return
					}
					if !covered && len(ms) > 0 {
						errs <- fmt.Errorf("not covered with %d messages", len(ms))
						return
					}
					for j := 1; j < len(ms); j++ {
						if ms[j].MsgID <= ms[j-1].MsgID {
							errs <- fmt.Errorf("page out of order: %v", msgIDs(ms))
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, conv := range []domain.ConversationID{ab, g1} {
			ms, more, covered, err := c.After(t.Context(), conv, 0, 1000)
			if err != nil || !covered || more || len(ms) != workers/2*each {
				t.Errorf("%s: %d messages, more %v, covered %v, err %v; want %d covered", conv, len(ms), more, covered, err, workers/2*each)
			}
		}
	})

	t.Run("lifecycle", func(t *testing.T) { runLifecycle(t, newCache) })
	t.Run("erasure", func(t *testing.T) { runErase(t, newCache) })
}

// forget is Forget that must succeed and remove want messages.
func forget(t *testing.T, c cache.Cache, conv domain.ConversationID, through domain.MsgID, want int) {
	t.Helper()
	n, err := c.Forget(t.Context(), conv, through)
	if err != nil {
		t.Fatalf("Forget(%s, %d): %v", conv, through, err)
	}
	if n != want {
		t.Errorf("Forget(%s, %d) removed %d, want %d", conv, through, n, want)
	}
}

// testForget: what the history retention removed leaves the cache too,
// and the cache no longer answers for a range that reaches below it.
func testForget(t *testing.T, newCache NewCache) {
	clk := &Clock{now: t0}
	c := newCache(t, clk.Now)
	apply(t, c, clk, []add{{id: id(10), floor: id(5)}, {id: id(20)}, {id: id(30)}, {conv: g1, id: id(7), floor: 0}})
	forget(t, c, ab, id(20), 2)
	for _, r := range []read{
		{after: id(5)},
		{after: id(19)},
		{after: id(20), want: []domain.MsgID{id(30)}, wantCovered: true},
		{conv: g1, after: 0, want: []domain.MsgID{id(7)}, wantCovered: true},
	} {
		check(t, c, r)
	}
	forget(t, c, ab, id(15), 0) // below the marker: nothing
	forget(t, c, ab, id(20), 0) // again: nothing
	forget(t, c, ac, id(50), 0) // unknown: stays unknown
	check(t, c, read{conv: ac, after: id(50)})
	// A replay adds the removed messages again: they stay out.
	apply(t, c, clk, []add{{id: id(10)}, {id: id(20)}})
	check(t, c, read{after: id(20), want: []domain.MsgID{id(30)}, wantCovered: true})
	check(t, c, read{after: id(9)})
	// Everything forgotten: covered after the last, empty.
	forget(t, c, ab, id(40), 1)
	check(t, c, read{after: id(40), wantCovered: true})
	apply(t, c, clk, []add{{id: id(41)}})
	check(t, c, read{after: id(40), want: []domain.MsgID{id(41)}, wantCovered: true})
}
