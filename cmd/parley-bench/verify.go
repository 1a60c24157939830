package main

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// The generator checks every push against the acks without remembering
// every message: per device and conversation it keeps the last msgid
// pushed and two small sets, of messages acked but not yet pushed there
// and of messages pushed there before their sender's ack came back. A
// message leaves both sets as soon as its ack and its push have met, so
// the memory follows what is in flight (and what failed verification),
// not the length of the run; what stays for the whole run is one entry
// per device and conversation: its last msgid, in a map keyed by a hash
// of the conversation's id, so that neither key nor value holds a
// pointer for the collector to follow (with random peers that map grows
// by two entries a message: 1.8 million after five minutes at 3,000/s,
// whose strings and thread pointers each collection walked).
//
// Pushes of one conversation reach a device in log order, and msgids
// increase along the log, so a push at or below the conversation's last
// msgid on that device breaks the order: it is out of order when it is
// the first push of an acked message still awaited there, and a duplicate
// otherwise.

// earlyExpiry is how long a push waits for its sender's ack. A send's ack
// arrives within sendTimeout of the send, and the push comes after the
// send, so past twice that no ack will come: the push was of a send that
// got no ack.
const earlyExpiry = 2 * sendTimeout

// convKey is a conversation's id as the tracker keys it: a 64-bit hash
// (two of a run's conversations colliding on one device would need some
// 2^32 conversations).
type convKey uint64

var convSeed = maphash.MakeSeed()

func keyOf(conv string) convKey { return convKey(maphash.String(convSeed, conv)) }

// thread is one device's messages in flight in one conversation; a
// device keeps one only while it is not empty.
type thread struct {
	awaiting map[int64]struct{} // acked, not yet pushed to the device
	early    map[int64]early    // pushed before the sender's ack came back
}

func (t *thread) empty() bool { return len(t.awaiting) == 0 && len(t.early) == 0 }

// holdsEarly reports whether t, which may be nil, holds an early push of msgid.
func (t *thread) holdsEarly(msgid int64) bool {
	if t == nil {
		return false
	}
	_, ok := t.early[msgid]
	return ok
}

type early struct {
	at     int64 // receive time, Unix nanoseconds
	behind bool  // it came at or below last and was counted as a duplicate
}

// tracker is the verification state of one generator process. Each
// device's threads are guarded by the device's mutex.
type tracker struct {
	expected   atomic.Int64 // acked messages × their recipients
	awaiting   atomic.Int64 // entries in every thread's awaiting set
	duplicated atomic.Int64
	outOfOrder atomic.Int64
	// unackedPushes counts pushes whose ack never came, as they expire
	// from the early sets; the rest are counted at the end.
	unackedPushes atomic.Int64
	// gaps counts pushes whose prevMsgId is not the last msgid pushed to
	// the device in the conversation: a client syncs at each.
	gaps atomic.Int64
}

// open is d's thread of k, made if it has none. d's mutex is held.
func (d *device) open(k convKey) *thread {
	t := d.threads[k]
	if t == nil {
		if d.threads == nil {
			d.threads = map[convKey]*thread{}
		}
		t = &thread{}
		d.threads[k] = t
	}
	return t
}

// tidy drops t, d's thread of k, once it is empty. d's mutex is held.
func (d *device) tidy(k convKey, t *thread) {
	if t.empty() {
		delete(d.threads, k)
	}
}

// setLast records msgid as pushed to d in k. d's mutex is held.
func (d *device) setLast(k convKey, msgid int64) {
	if d.last == nil {
		d.last = map[convKey]int64{}
	}
	if msgid > d.last[k] {
		d.last[k] = msgid
	}
}

// acked records a sender's ack: every recipient other than the sender is
// now owed a push of msgid in conv.
func (tr *tracker) acked(conv string, msgid int64, sender *device, recipients []*device) {
	k := keyOf(conv)
	for _, r := range recipients {
		if r == sender {
			continue
		}
		tr.expected.Add(1)
		r.mu.Lock()
		t := r.open(k)
		if e, ok := t.early[msgid]; ok {
			// The push was first; the two meet here.
			r.forgetEarly(k, t, msgid)
			if e.behind {
				// It was the message's first push after all, only late.
				tr.duplicated.Add(-1)
				tr.outOfOrder.Add(1)
			}
		} else {
			if t.awaiting == nil {
				t.awaiting = map[int64]struct{}{}
			}
			t.awaiting[msgid] = struct{}{}
			tr.awaiting.Add(1)
		}
		r.tidy(k, t)
		r.mu.Unlock()
	}
}

// gap counts a push that does not follow the last one pushed to the
// device: a client would sync there. The first push of a conversation to
// a device is not counted (what came before the run is not tracked).
func (tr *tracker) gap(last, msgid, prev int64) {
	if last != 0 && msgid > last && prev != last {
		tr.gaps.Add(1)
	}
}

// own records the push of d's own send of msgid in conv.
func (tr *tracker) own(d *device, conv string, msgid, prev int64) {
	k := keyOf(conv)
	d.mu.Lock()
	defer d.mu.Unlock()
	tr.gap(d.last[k], msgid, prev)
	d.setLast(k, msgid)
}

// pushed records a push of msgid (after prev) in conv to d, received at now.
func (tr *tracker) pushed(d *device, conv string, msgid, prev int64, now time.Time) {
	k := keyOf(conv)
	d.mu.Lock()
	defer d.mu.Unlock()
	last := d.last[k]
	tr.gap(last, msgid, prev)
	t := d.threads[k]
	awaited := false
	if t != nil {
		if _, awaited = t.awaiting[msgid]; awaited {
			delete(t.awaiting, msgid)
			if len(t.awaiting) == 0 {
				t.awaiting = nil
			}
			tr.awaiting.Add(-1)
		}
	}
	switch {
	case msgid > last:
		d.setLast(k, msgid)
		if !awaited {
			d.addEarly(k, msgid, early{at: now.UnixNano()})
		}
	case awaited:
		tr.outOfOrder.Add(1)
	default:
		tr.duplicated.Add(1)
		if !t.holdsEarly(msgid) && msgid != last {
			// Either pushed here before, or a late first push whose ack
			// has not come back yet: acked decides.
			d.addEarly(k, msgid, early{at: now.UnixNano(), behind: true})
		}
	}
	if t != nil {
		d.tidy(k, t)
	}
}

// addEarly records an early push of msgid to d in k. d's mutex is held.
func (d *device) addEarly(k convKey, msgid int64, e early) {
	t := d.open(k)
	if t.early == nil {
		t.early = map[int64]early{}
		if d.early == nil {
			d.early = map[convKey]*thread{}
		}
		d.early[k] = t
	}
	t.early[msgid] = e
}

// forgetEarly drops msgid's early push from t, d's thread of k, and the
// set once it is empty (the caller tidies the thread). d's mutex is held.
func (d *device) forgetEarly(k convKey, t *thread, msgid int64) {
	delete(t.early, msgid)
	if len(t.early) == 0 {
		t.early = nil
		delete(d.early, k)
		if len(d.early) == 0 {
			d.early = nil
		}
	}
}

// expire drops the early pushes older than earlyExpiry, counting those not
// already counted as duplicates as pushes of unacked sends. It visits the
// threads that hold early pushes only, not every conversation of the run.
func (tr *tracker) expire(devices []*device, now time.Time) {
	cutoff := now.Add(-earlyExpiry).UnixNano()
	for _, d := range devices {
		d.mu.Lock()
		for k, t := range d.early {
			for id, e := range t.early {
				if e.at < cutoff {
					d.forgetEarly(k, t, id)
					if !e.behind {
						tr.unackedPushes.Add(1)
					}
				}
			}
			d.tidy(k, t)
		}
		d.mu.Unlock()
	}
}

// result is the verification once every send has ended and the drain is
// over: what is still awaited is lost, and every early push left was of a
// send that got no ack.
func (tr *tracker) result(devices []*device) Verify {
	v := Verify{
		Expected:      tr.expected.Load(),
		Lost:          tr.awaiting.Load(),
		Duplicated:    tr.duplicated.Load(),
		OutOfOrder:    tr.outOfOrder.Load(),
		UnackedPushes: tr.unackedPushes.Load(),
		Gaps:          tr.gaps.Load(),
	}
	for _, d := range devices {
		d.mu.Lock()
		for _, t := range d.early {
			for _, e := range t.early {
				if !e.behind {
					v.UnackedPushes++
				}
			}
		}
		d.mu.Unlock()
	}
	return v
}
