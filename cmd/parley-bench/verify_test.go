package main

import (
	"reflect"
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	type step struct {
		ack   bool // an ack of msgid by a; otherwise a push of msgid to b
		msgid int64
	}
	ack := func(id int64) step { return step{ack: true, msgid: id} }
	push := func(id int64) step { return step{msgid: id} }
	for _, tc := range []struct {
		name  string
		steps []step
		want  Verify
	}{
		{"ack then push", []step{ack(1), push(1)}, Verify{Expected: 1}},
		{"push then ack", []step{push(1), ack(1)}, Verify{Expected: 1}},
		{"acked, never pushed", []step{ack(1), ack(2), push(2)}, Verify{Expected: 2, Lost: 1}},
		{"pushed twice in a row", []step{ack(1), push(1), push(1)}, Verify{Expected: 1, Duplicated: 1}},
		{"pushed again later", []step{ack(1), push(1), ack(2), push(2), push(1)}, Verify{Expected: 2, Duplicated: 1}},
		{"pushed twice before its ack", []step{push(1), push(1), ack(1)}, Verify{Expected: 1, Duplicated: 1}},
		{"out of order after the acks", []step{ack(1), ack(2), push(2), push(1)}, Verify{Expected: 2, OutOfOrder: 1}},
		{"out of order before the acks", []step{push(2), push(1), ack(1), ack(2)}, Verify{Expected: 2, OutOfOrder: 1}},
		{"an old push again, then a later ack", []step{ack(1), push(1), push(3), push(1), ack(3)}, Verify{Expected: 2, Duplicated: 1, Gaps: 1}},
		{"a push of a send with no ack", []step{push(1), ack(2), push(2)}, Verify{Expected: 1, UnackedPushes: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr tracker
			a, b := &device{account: "a"}, &device{account: "b"}
			for _, s := range tc.steps {
				if s.ack {
					tr.acked("d:a:b", s.msgid, a, []*device{a, b})
				} else {
					tr.pushed(b, "d:a:b", s.msgid, s.msgid-1, time.Now())
				}
			}
			if got := tr.result([]*device{a, b}); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A push that does not follow the last one on the device is a gap; the
// push of the device's own send moves it on like any other.
func TestTrackerCountsGaps(t *testing.T) {
	var tr tracker
	a, b := &device{account: "a"}, &device{account: "b"}
	tr.pushed(a, "d:a:b", 1, 0, time.Now()) // b's message
	tr.own(a, "d:a:b", 2, 1)                // a's own
	tr.pushed(a, "d:a:b", 3, 2, time.Now()) // b's: follows a's own push
	if got := tr.gaps.Load(); got != 0 {
		t.Fatalf("%d gaps with every push chained, want 0", got)
	}
	// Without the push of a's own message 4, b's 5 shows a gap.
	tr.pushed(a, "d:a:b", 5, 4, time.Now())
	if got := tr.result([]*device{a, b}).Gaps; got != 1 {
		t.Fatalf("%d gaps after a missing push, want 1", got)
	}
}

// The tracker forgets what has been verified: its memory follows the
// messages in flight, not the length of the run.
func TestTrackerForgetsWhatMet(t *testing.T) {
	var tr tracker
	a, b := &device{account: "a"}, &device{account: "b"}
	for id := int64(1); id <= 10000; id++ {
		if id%2 == 0 {
			tr.acked("d:a:b", id, a, []*device{a, b})
			tr.pushed(b, "d:a:b", id, id-1, time.Now())
		} else {
			tr.pushed(b, "d:a:b", id, id-1, time.Now())
			tr.acked("d:a:b", id, a, []*device{a, b})
		}
	}
	if len(a.threads) != 0 || len(b.threads) != 0 || len(b.early) != 0 {
		t.Errorf("after 10,000 verified messages: %d threads in flight of the sender, %d of the recipient, %d with early pushes",
			len(a.threads), len(b.threads), len(b.early))
	}
	if got := b.last[keyOf("d:a:b")]; got != 10000 {
		t.Errorf("the recipient's last msgid is %d, want 10000", got)
	}
	if got := tr.result([]*device{a, b}); !reflect.DeepEqual(got, Verify{Expected: 10000}) {
		t.Errorf("got %+v", got)
	}
}

// A push whose ack cannot come any more is counted once, when it expires.
func TestTrackerExpiresEarlyPushes(t *testing.T) {
	var tr tracker
	b := &device{account: "b"}
	start := time.Now()
	tr.pushed(b, "d:a:b", 1, 0, start)
	tr.pushed(b, "d:a:b", 2, 1, start.Add(earlyExpiry))
	tr.expire([]*device{b}, start.Add(earlyExpiry+time.Second))
	if n := len(b.threads[keyOf("d:a:b")].early); n != 1 {
		t.Errorf("%d early pushes left, want 1", n)
	}
	if got := tr.result([]*device{b}); got.UnackedPushes != 2 {
		t.Errorf("pushes of unacked sends: %d, want 2", got.UnackedPushes)
	}
	// Expiring looks at the threads holding early pushes, which a thread
	// leaves once its last one goes.
	if len(b.early) != 1 {
		t.Errorf("%d threads with early pushes, want 1", len(b.early))
	}
	tr.expire([]*device{b}, start.Add(2*earlyExpiry+time.Second))
	if len(b.early) != 0 || len(b.threads) != 0 {
		t.Errorf("after every early push expired: %d threads with early pushes, %d threads in flight", len(b.early), len(b.threads))
	}
	if got := tr.result([]*device{b}); got.UnackedPushes != 2 {
		t.Errorf("pushes of unacked sends after they all expired: %d, want 2", got.UnackedPushes)
	}
}
