package cache

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/internal/heapscan"
	"github.com/parley-chat/parley/transport/wire"
)

// checkEncoded checks that AfterEncoded hands out, for every message of
// conv, the encoding of its current form — the form After returns — and
// returns the encodings.
func checkEncoded(t *testing.T, c *Memory, conv domain.ConversationID) [][]byte {
	t.Helper()
	ctx := context.Background()
	from := coveredAfter(c, conv)
	plain, _, _, err := c.After(ctx, conv, from, 1000)
	if err != nil {
		t.Fatal(err)
	}
	msgs, encs, _, covered, err := c.AfterEncoded(ctx, conv, from, 1000)
	if err != nil || !covered {
		t.Fatalf("AfterEncoded: covered %v, err %v", covered, err)
	}
	if !reflect.DeepEqual(msgs, plain) {
		t.Fatalf("AfterEncoded's messages %v, After's %v", msgs, plain)
	}
	if len(encs) != len(msgs) {
		t.Fatalf("%d encodings for %d messages", len(encs), len(msgs))
	}
	for i := range msgs {
		if want := wire.EncodeMessage(&msgs[i]); !bytes.Equal(encs[i], want) {
			t.Fatalf("message %d kept as %s, it is now %s", msgs[i].MsgID, encs[i], want)
		}
	}
	return encs
}

// coveredAfter is conv's coverage marker.
func coveredAfter(c *Memory, conv domain.ConversationID) domain.MsgID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.convs[conv].coveredAfter
}

// encodedBytes is what the encodings of every message held cost.
func encodedBytes(t *testing.T, c *Memory, convs ...domain.ConversationID) int64 {
	t.Helper()
	var n int64
	for _, conv := range convs {
		_, encs, _, _, _ := c.AfterEncoded(context.Background(), conv, coveredAfter(c, conv), 1000)
		for _, e := range encs {
			n += int64(len(e))
		}
	}
	return n
}

// A kept encoding is made again whenever its message changes — an edit, a
// deletion, an erasure — goes with it when it is trimmed or forgotten, and
// counts against the byte bound: the encoding cache holds exactly the
// plain cache's bytes plus its encodings', change after change. An
// encoding handed out before a change stays what it was.
func TestMemoryKeepsEncodingsCurrent(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: t0}
	enc, plain := newMemory(clk).KeepEncoded(wire.EncodeMessage), newMemory(clk)
	both := func(f func(c *Memory)) { f(enc); f(plain) }
	bob := domain.Sender{Account: "bob", Device: "tablet"}
	for id := domain.MsgID(1); id <= 6; id++ {
		m := msgAt(ab, id, t0.Add(-time.Hour+time.Duration(id)*time.Minute))
		if id%2 == 0 {
			m.Sender = bob
		}
		m.Body = "<body> \"" + m.Body + "\" & \u2028"
		both(func(c *Memory) { _ = c.Add(ctx, m, 0) })
		both(func(c *Memory) { _ = c.Add(ctx, msgAt(g1, id, t0.Add(-time.Duration(id)*time.Hour)), 0) })
	}
	steps := []struct {
		name   string
		change func(c *Memory)
		check  func(t *testing.T, before, after [][]byte)
	}{
		{name: "added", change: func(*Memory) {}},
		{name: "edited", change: func(c *Memory) {
			_ = c.Amend(ctx, domain.Amendment{Conversation: ab, MsgID: 1, By: domain.Sender{Account: "alice", Device: "phone"},
				Body: "a much longer body, edited <twice>", At: t0, Revision: 100})
		}, check: func(t *testing.T, before, after [][]byte) {
			if !bytes.Contains(after[0], []byte(`"body":"a much longer body, edited \u003ctwice\u003e","serverTime"`)) ||
				!bytes.Contains(after[0], []byte(`"editedAt":`)) {
				t.Fatalf("edited message kept as %s", after[0])
			}
			if !bytes.Contains(before[0], []byte(`\u003cbody\u003e`)) {
				t.Fatalf("an encoding handed out before the edit changed to %s", before[0])
			}
		}},
		{name: "deleted", change: func(c *Memory) {
			_ = c.Amend(ctx, domain.Amendment{Conversation: ab, MsgID: 2, By: bob, Delete: true, At: t0, Revision: 101})
		}, check: func(t *testing.T, _, after [][]byte) {
			if !bytes.Contains(after[1], []byte(`"body":"","serverTime"`)) || !bytes.HasSuffix(after[1], []byte(`,"deleted":true}`)) {
				t.Fatalf("deleted message kept as %s", after[1])
			}
		}},
		{name: "erased", change: func(c *Memory) {
			_ = c.Erase(ctx, domain.Erasure{Account: "bob", At: t0, Revision: 102}, func(domain.ConversationID) bool { return true })
		}, check: func(t *testing.T, _, after [][]byte) {
			for _, i := range []int{3, 5} {
				if !bytes.HasSuffix(after[i], []byte(`,"deleted":true}`)) {
					t.Fatalf("erased message kept as %s", after[i])
				}
			}
			if bytes.Contains(after[0], []byte(`"deleted"`)) {
				t.Fatalf("alice's message erased with bob's: %s", after[0])
			}
		}},
		{name: "added again", change: func(c *Memory) { _ = c.Add(ctx, msgAt(ab, 3, t0), 0) }},
		{name: "forgotten", change: func(c *Memory) { _, _ = c.Forget(ctx, ab, 1) }, check: func(t *testing.T, _, after [][]byte) {
			if len(after) != 5 {
				t.Fatalf("%d encodings after forgetting one of 6", len(after))
			}
		}},
		{name: "trimmed", change: func(c *Memory) { clk.now = t0.Add(Retention - 56*time.Minute - 30*time.Second); c.Trim() }, check: func(t *testing.T, _, after [][]byte) {
			if len(after) != 3 {
				t.Fatalf("%d encodings after the retention passed 2 of 5", len(after))
			}
			if n := encodedBytes(t, enc, g1); n != 0 {
				t.Fatalf("%d bytes of encodings of messages past the retention", n)
			}
		}},
	}
	before := checkEncoded(t, enc, ab)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			both(s.change)
			after := checkEncoded(t, enc, ab)
			if s.check != nil {
				s.check(t, before, after)
			}
			before = after
			if got, want := enc.Bytes(), plain.Bytes()+encodedBytes(t, enc, ab, g1); got != want || encodedBytes(t, enc, ab) == 0 {
				t.Fatalf("the cache counts %d bytes, its messages cost %d with their encodings", got, want)
			}
		})
	}
}

// The byte bound holds with the encodings counted: a cache that keeps them
// forgets conversations sooner than one that does not.
func TestBoundedMemoryCountsEncodings(t *testing.T) {
	ctx := context.Background()
	const budget = 64 << 10
	held := func(c *Memory) int {
		n := 0
		for i := range 200 {
			conv := domain.GroupConversation(domain.GroupID("g" + string(rune('a'+i%26)) + string(rune('a'+i/26))))
			for id := domain.MsgID(1); id <= 5; id++ {
				_ = c.Add(ctx, msgAt(conv, id, time.Now()), 0)
			}
		}
		if c.Bytes() > budget+4<<10 {
			t.Fatalf("cache of %d bytes over its bound of %d", c.Bytes(), budget)
		}
		for _, e := range c.convs {
			n += len(e.msgs)
		}
		return n
	}
	plain := held(NewBoundedMemory(Retention, budget))
	encoded := held(NewBoundedMemory(Retention, budget).KeepEncoded(wire.EncodeMessage))
	if encoded >= plain {
		t.Fatalf("with encodings the cache holds %d messages, without %d: the encodings are not counted", encoded, plain)
	}
}

// A conversation's kept messages are a few objects for the collector to
// mark, their encodings and strings together, not one per message nor one
// per string: every collection marks all the messages a single node's
// cache holds while the sends wait.
func TestMemoryKeepsAConversationAsFewObjects(t *testing.T) {
	clk := &clock{now: t0}
	c := newMemory(clk).KeepEncoded(wire.EncodeMessage)
	const convs, each = 50, 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range convs * each {
		conv := domain.DirectConversation(domain.AccountID(fmt.Sprint("a", i%convs)), "z")
		// Strings of their own, as the log's decoder makes them.
		m := domain.Message{ID: uuid.New(), MsgID: domain.MsgID(1<<48 + i), ClientMsgID: fmt.Sprint("client-", i),
			Sender:       domain.Sender{Account: domain.AccountID(fmt.Sprint("a", i%convs)), Device: domain.DeviceID(fmt.Sprint("phone", i))},
			Conversation: conv, Kind: strings.Clone("text"), Body: fmt.Sprint("a body of a message, number ", i), ServerTime: t0}
		if err := c.Add(context.Background(), m, 0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	if per := float64(after.HeapObjects-before.HeapObjects) / (convs * each); per > 0.1 {
		t.Errorf("%.2f objects of the heap a message kept, want at most 0.1 (a conversation's few, shared)", per)
	} else {
		t.Logf("%.3f objects of the heap a message kept", per)
	}
}

// Messages and encodings handed out stay what they were while their
// conversation changes under them — edit after edit, messages forgotten —
// however often its buffer is copied to drop the bytes no message uses.
func TestMemoryHandsOutWhatStays(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: t0}
	c := newMemory(clk).KeepEncoded(wire.EncodeMessage)
	for id := domain.MsgID(1); id <= 20; id++ {
		_ = c.Add(ctx, msgAt(ab, id, t0), 0)
	}
	type handed struct {
		msgs  []domain.Message
		encs  [][]byte
		clone []string
	}
	var out []handed
	hand := func() {
		msgs, encs, _, _, err := c.AfterEncoded(ctx, ab, coveredAfter(c, ab), 1000)
		if err != nil {
			t.Fatal(err)
		}
		h := handed{msgs: msgs, encs: encs}
		for i, m := range msgs {
			h.clone = append(h.clone, strings.Clone(fmt.Sprintf("%s|%s|%s|%s|%s|%s", m.ClientMsgID, m.Sender.Account, m.Sender.Device, m.Kind, m.Body, encs[i])))
		}
		out = append(out, h)
	}
	hand()
	for round := range 12 {
		for id := domain.MsgID(1); id <= 20; id++ {
			_ = c.Amend(ctx, domain.Amendment{Conversation: ab, MsgID: id, By: domain.Sender{Account: "alice", Device: "phone"},
				Body: strings.Repeat(fmt.Sprint(round), int(id)), At: t0, Revision: domain.MsgID(100 + round*20 + int(id))})
		}
		if round%4 == 3 {
			_, _ = c.Forget(ctx, ab, domain.MsgID(round/4*5))
		}
		checkEncoded(t, c, ab)
		hand()
	}
	for n, h := range out {
		for i, m := range h.msgs {
			if got := fmt.Sprintf("%s|%s|%s|%s|%s|%s", m.ClientMsgID, m.Sender.Account, m.Sender.Device, m.Kind, m.Body, h.encs[i]); got != h.clone[i] {
				t.Fatalf("hand-out %d, message %d changed from %q to %q", n, i, h.clone[i], got)
			}
		}
	}
	if e := c.convs[ab]; e.dead > len(e.buf)/2 {
		t.Fatalf("%d of the buffer's %d bytes are dead", e.dead, len(e.buf))
	}
}

// TestMemoryScansNoMessage: what a collection scans of the cache grows
// with its conversations, not with the messages they keep.
func TestMemoryScansNoMessage(t *testing.T) {
	c := newMemory(&clock{now: t0}).KeepEncoded(wire.EncodeMessage)
	const convs, each = 20, 250
	before := heapscan.Bytes()
	for i := range convs * each {
		m := msgAt(domain.DirectConversation(domain.AccountID(fmt.Sprint("a", i%convs)), "z"), domain.MsgID(1<<48+i), t0)
		if err := c.Add(context.Background(), m, 0); err != nil {
			t.Fatal(err)
		}
	}
	after := heapscan.Bytes()
	runtime.KeepAlive(c)
	if per := float64(after-before) / (convs * each); per > 8 {
		t.Fatalf("%.1f bytes to scan a message kept; want at most 8 (a conversation's, shared)", per)
	}
}
