package ws

import (
	"cmp"
	"encoding/binary"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// WebSocket opcodes of the frames the server writes itself.
const (
	opText = 0x1
	opPong = 0xA
)

// Budget bounds the bytes queued on every connection of a gateway together,
// and those of the connections of one source address to a part of it
// (ShareDivisor): one address cannot fill it and so get every other
// connection's next frame refused. A frame that does not fit makes room
// first by closing the connections furthest behind (see makeRoom): the
// slowest readers pay for a full budget, not whoever is pushed to next.
type Budget struct {
	used  atomic.Int64
	limit int64
	// shedding lets one makeRoom look and close at a time: two pushers
	// that found the budget full close the connection furthest behind
	// once, not once each.
	shedding sync.Mutex
	// The budget's open outboxes, for makeRoom, in lists through the
	// outboxes themselves (two pointers each, no map entry): those of each
	// share in its own (share.members), so that a full share looks through
	// its own connections only, and those not counted per address in
	// loose. makeRoom runs while a push holds the gateway's lock, so it
	// cannot look through the gateway's own list of connections.
	membersMu sync.Mutex
	loose     *outbox
	shares    map[*share]struct{} // those with members
}

// ShareDivisor: the connections of one source address may queue at most
// 1/ShareDivisor of a Budget together. Half: it keeps one address from
// taking the whole budget; stalled readers are closed by age once a part
// or the whole is full, and many devices behind one address (a NAT)
// share the part.
const ShareDivisor = 2

// maxRoomAttempts bounds how often one frame makes room in a full budget.
const maxRoomAttempts = 3

// share is the bytes queued on the connections of one source address
// (the gateway keeps it with what else it counts of the address).
type share struct {
	used    atomic.Int64
	members *outbox // guarded by the budget's membersMu
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit, shares: map[*share]struct{}{}} }

// list is the head of the list of sh's outboxes (loose for nil).
// membersMu is held.
func (b *Budget) list(sh *share) **outbox {
	if sh == nil {
		return &b.loose
	}
	return &sh.members
}

// Used is the bytes queued now.
func (b *Budget) Used() int64 { return b.used.Load() }

func (b *Budget) take(n int64, sh *share) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	if sh != nil && sh.used.Add(n) > b.limit/ShareDivisor {
		sh.used.Add(-n)
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) give(n int64, sh *share) {
	b.used.Add(-n)
	if sh != nil {
		sh.used.Add(-n)
	}
}

// join lists o among the budget's outboxes.
func (b *Budget) join(o *outbox) {
	b.membersMu.Lock()
	defer b.membersMu.Unlock()
	head := b.list(o.share)
	o.next = *head
	if *head != nil {
		(*head).prev = o
	}
	*head = o
	if o.share != nil {
		b.shares[o.share] = struct{}{}
	}
}

// leave takes o off the list, once it is closed. Call it without holding
// o's lock: makeRoom holds the list's while it takes outboxes' locks.
func (b *Budget) leave(o *outbox) {
	b.membersMu.Lock()
	defer b.membersMu.Unlock()
	head := b.list(o.share)
	if o.prev == nil && *head != o {
		return // not listed, or no longer
	}
	if o.prev != nil {
		o.prev.next = o.next
	} else {
		*head = o.next
	}
	if o.next != nil {
		o.next.prev = o.prev
	}
	o.prev, o.next = nil, nil
	if *head == nil && o.share != nil {
		delete(b.shares, o.share)
	}
}

// waitingLonger lists the open outboxes counted in sh (every outbox if sh
// is nil) whose oldest unwritten frame was queued before since, the
// longest waiting first: the readers furthest behind.
func (b *Budget) waitingLonger(sh *share, since time.Duration) []*outbox {
	type waiter struct {
		o      *outbox
		oldest time.Duration
	}
	var ws []waiter
	look := func(head *outbox) {
		for o := head; o != nil; o = o.next {
			if oldest, ok := o.waiting(); ok && oldest != 0 && oldest < since {
				ws = append(ws, waiter{o, oldest})
			}
		}
	}
	b.membersMu.Lock()
	if sh != nil {
		look(sh.members)
	} else {
		look(b.loose)
		for s := range b.shares {
			look(s.members)
		}
	}
	b.membersMu.Unlock()
	slices.SortFunc(ws, func(x, y waiter) int { return cmp.Compare(x.oldest, y.oldest) })
	out := make([]*outbox, len(ws))
	for i, w := range ws {
		out[i] = w.o
	}
	return out
}

// fits reports whether n more bytes fit in the budget and in sh's part.
func (b *Budget) fits(n int64, sh *share) (total, part bool) {
	return b.used.Load()+n <= b.limit, sh == nil || sh.used.Load()+n <= b.limit/ShareDivisor
}

// makeRoom closes, as slow consumers, the connections whose oldest unwritten
// frame has waited longer than self's — those furthest behind first, of
// self's source address when only that address's part is full — until n
// more bytes of self's fit. A reader that keeps up has only frames queued
// a moment ago, so it is not closed for readers that stalled, however
// few bytes each of those holds. makeRoom reports whether the frame fits;
// if not, self is further behind than every connection left, and is the
// one to close. It looks through the budget's connections once for each
// part that is full. Call it without holding self's lock.
func (b *Budget) makeRoom(self *outbox, n int64) bool {
	b.shedding.Lock()
	defer b.shedding.Unlock()
	mine, ok := self.waiting()
	if !ok {
		return false // closed meanwhile
	}
	if mine == 0 {
		mine = monotonic() // nothing queued: every waiting frame is older
	}
	for {
		total, part := b.fits(n, self.share)
		if total && part {
			return true
		}
		var scope *share // the whole budget is full...
		if total {
			scope = self.share // ...or only the address's part
		}
		shed := false
		for _, v := range b.waitingLonger(scope, mine) {
			v.discard()
			v.overflow()
			shed = true
			if t, p := b.fits(n, self.share); (scope == nil && t) || (scope != nil && p) {
				break
			}
		}
		if !shed {
			return false
		}
	}
}

// outbox is one connection's queue of frames to write, bounded in bytes.
// Frames are written by one goroutine started on demand (an idle
// connection has none), several at a time with one writev: a busy
// connection costs one syscall per batch, not one per frame. Frames are
// framed here rather than by gws so that a batch is one write; each
// write holds whole frames only, so gws's own close frames, written
// between them, never interleave with a frame.
type outbox struct {
	budget *Budget
	// share is the connection's source address's part of budget (nil for
	// a connection not counted per address).
	share *share
	// overflow is called, outside the lock, when a frame does not fit or a
	// write fails: the connection is closed as a slow consumer.
	overflow func()
	timeout  time.Duration
	conn     net.Conn
	// observer is told how long each frame waited, from push to the end
	// of its write (the gateway's: a method value per connection would
	// be an allocation per connection).
	observer Observer

	mu sync.Mutex
	// limit is the most bytes the queue may hold.
	limit    int64
	frames   []outFrame
	spare    []outFrame
	queued   int64 // bytes of frames queued or being written (cost)
	inflight int64 // bytes of frames being written (cost)
	// charged is the frames queued or being written as the budget counts
	// them (charge).
	charged int64
	// oldest is when the oldest frame not yet written was queued
	// (monotonic; 0 when the queue is empty): how far behind the reader
	// is, for Budget.makeRoom.
	oldest  time.Duration
	writing bool
	closed  bool
	// then runs once every frame queued before it is written.
	then func()
	// room, made by a reader that waits before taking more requests, is
	// closed when the queue drains to half of its limit, or closes.
	room chan struct{}

	// deadline is the connection's write deadline (monotonic, as frames'
	// times: 8 bytes, not a time.Time's 24), touched only by the flush
	// under way (see setDeadline).
	deadline time.Duration

	// prev and next place the outbox in its budget's list of members,
	// guarded by the budget's membersMu.
	prev, next *outbox
}

// deadlineSlack is how much later than its timeout a write deadline may
// fall: a flush moves the deadline only when less than the timeout is
// left, to the timeout plus this slack from now. A busy connection (a
// member of busy groups gets a frame every few milliseconds) then sets it
// about once a second instead of once per write, each a move of a timer
// in the runtime, and a write still fails only once it has stalled for
// longer than the timeout (at most this much longer).
const deadlineSlack = time.Second

type outFrame struct {
	op byte
	// shares is how many connections the payload was queued on at once
	// (a push's one encoding): the budget counts 1/shares of it here.
	shares  int32
	payload []byte
	at      time.Duration // when it was queued (monotonic)
}

// clockBase is the origin of monotonic(): a frame's queue time is a
// number, not a time.Time, so a frame holds no pointer for it.
var clockBase = time.Now()

// monotonic is the time since clockBase, on the monotonic clock.
func monotonic() time.Duration { return time.Since(clockBase) }

func newOutbox(conn net.Conn, limit int64, budget *Budget, sh *share, timeout time.Duration, overflow func(), observer Observer) *outbox {
	o := &outbox{budget: budget, share: sh, overflow: overflow, timeout: timeout, conn: conn, limit: limit, observer: observer}
	budget.join(o)
	return o
}

// setLimit changes the queue's limit (a connection gets a larger one once
// it has said hello).
func (o *outbox) setLimit(limit int64) {
	o.mu.Lock()
	o.limit = limit
	o.mu.Unlock()
}

// cost is what a frame counts against its connection's limit: its payload
// and the longest header.
func cost(payload []byte) int64 { return int64(len(payload) + maxHeader) }

// charge is what a frame counts against the budget all connections share:
// its header, and its part of a payload queued on shares connections at
// once — they hold one encoding, so the budget counts it about once, not
// once for each (a push to 500 members counted 500 times its memory).
func charge(payload []byte, shares int32) int64 {
	return int64(maxHeader + len(payload)/int(max(shares, 1)))
}

// push queues one frame. A frame that would take the queue past its limit
// is not queued: the connection is closed as a slow consumer instead, so
// that it resyncs; nothing is skipped silently (I5). So is a frame past
// the shared budget, unless closing connections that hold more makes room
// for it (Budget.makeRoom). payload must not change afterwards:
// a push shares one encoding among many connections.
func (o *outbox) push(op byte, payload []byte) bool { return o.pushShared(op, payload, 1) }

// pushShared is push for a payload queued on shares connections at once:
// it counts whole against this connection's limit, and 1/shares of it
// against the shared budget (charge).
func (o *outbox) pushShared(op byte, payload []byte, shares int32) bool {
	n, c := cost(payload), charge(payload, shares)
	o.mu.Lock()
	// The room made in a full budget may be taken by another frame before
	// this one takes it: it is made again, a few times.
	for attempt := 0; ; attempt++ {
		if o.closed {
			o.mu.Unlock()
			return false
		}
		if o.queued+n > o.limit {
			o.mu.Unlock()
			o.overflow()
			return false
		}
		if o.budget.take(c, o.share) {
			break
		}
		o.mu.Unlock()
		if attempt == maxRoomAttempts || !o.budget.makeRoom(o, c) {
			o.overflow()
			return false
		}
		o.mu.Lock()
	}
	at := monotonic()
	if o.queued == 0 {
		o.oldest = max(at, 1) // 0 is an empty queue
	}
	o.queued += n
	o.charged += c
	o.frames = append(o.frames, outFrame{op: op, shares: max(shares, 1), payload: payload, at: at})
	start := !o.writing
	o.writing = true
	o.mu.Unlock()
	if start {
		go o.flush()
	}
	return true
}

// closeAfter runs f, on a goroutine of its own, once every frame queued
// so far is written (at once if none is), and refuses frames from then on.
func (o *outbox) closeAfter(f func()) {
	o.mu.Lock()
	o.closed = true
	o.wakeLocked()
	if o.writing {
		o.then = f
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	go f()
}

// waiting is when the oldest frame not yet written was queued (its
// monotonic time; 0 when none is), and false once the outbox is closed.
func (o *outbox) waiting() (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.oldest, !o.closed
}

// discard refuses frames from now on and forgets them all, those being
// written included: the connection is going away without them, and what
// it held must be room in the budget now (see Budget.makeRoom). A write
// under way goes on until it ends or fails at its deadline (a closing
// session gives it a second), and until then the budget counts less than
// the heap holds. What was to run once the queue was written (closeAfter:
// the connection's close) runs now: the session is closed already, and
// nothing else would close the connection.
func (o *outbox) discard() {
	o.mu.Lock()
	o.closed = true
	o.budget.give(o.charged, o.share)
	o.queued, o.inflight, o.oldest = 0, 0, 0
	o.charged = 0
	clear(o.frames)
	o.frames = o.frames[:0]
	then := o.then
	o.then = nil
	o.wakeLocked()
	o.mu.Unlock()
	o.budget.leave(o)
	if then != nil {
		go then()
	}
}

// wakeLocked wakes a reader waiting for room.
func (o *outbox) wakeLocked() {
	if o.room != nil {
		close(o.room)
		o.room = nil
	}
}

// waitRoom returns once the queue holds at most half of its limit, or
// once it closes: a connection reads no request while its replies pile up
// unread, so a client that pipelines faster than it reads is slowed down
// instead of disconnected.
func (o *outbox) waitRoom() {
	for {
		o.mu.Lock()
		if o.queued <= o.limit/2 || o.closed {
			o.mu.Unlock()
			return
		}
		if o.room == nil {
			o.room = make(chan struct{})
		}
		room := o.room
		o.mu.Unlock()
		<-room
	}
}

// maxHeader is the longest header of an unmasked server frame.
const maxHeader = 10

// scratch is a flush's headers and write vector, kept between flushes:
// most flushes write a frame or two to a connection that was idle.
type scratch struct {
	hdrs []byte
	bufs net.Buffers
	// left is what the write has yet to write: WriteTo consumes it, and
	// a local one would be moved to the heap at every write.
	left net.Buffers
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// flush writes queued frames until the queue is empty.
func (o *outbox) flush() {
	sc := scratches.Get().(*scratch)
	defer func() {
		clear(sc.bufs[:cap(sc.bufs)])
		scratches.Put(sc)
	}()
	for {
		o.mu.Lock()
		batch := o.frames
		o.frames, o.spare = o.spare[:0], nil
		if len(batch) == 0 {
			// Nothing kept for an idle connection: most stay idle for
			// long, and a slice each adds up over many.
			o.frames = nil
			o.writing = false
			then := o.then
			o.then = nil
			o.mu.Unlock()
			if then != nil {
				then()
			}
			return
		}
		var n, c int64
		for _, f := range batch {
			n += cost(f.payload)
			c += charge(f.payload, f.shares)
		}
		o.inflight = n
		o.mu.Unlock()

		hdrs := sc.hdrs[:0]
		for _, f := range batch {
			hdrs = appendHeader(hdrs, f.op, len(f.payload))
		}
		bufs := sc.bufs[:0]
		off := 0
		for _, f := range batch {
			l := headerLen(len(f.payload))
			bufs = append(bufs, hdrs[off:off+l:off+l], f.payload)
			off += l
		}
		sc.hdrs, sc.bufs, sc.left = hdrs, bufs, bufs
		o.setDeadline()
		_, err := sc.left.WriteTo(o.conn)
		sc.left = nil
		if err == nil {
			now := monotonic()
			for _, f := range batch {
				o.observer.FrameWritten(now - f.at)
			}
		}
		clear(batch)

		o.mu.Lock()
		if o.inflight > 0 { // else discard gave the batch back already
			o.queued -= n
			o.charged -= c
			o.inflight = 0
			o.budget.give(c, o.share)
		}
		o.oldest = 0
		if len(o.frames) > 0 {
			o.oldest = max(o.frames[0].at, 1)
		}
		if o.queued <= o.limit/2 {
			o.wakeLocked()
		}
		o.spare = batch[:0]
		if err != nil {
			o.writing = false
			o.mu.Unlock()
			o.discard()
			o.overflow()
			return
		}
		o.mu.Unlock()
	}
}

// setDeadline gives the write about to start at least the timeout to
// finish (see deadlineSlack).
func (o *outbox) setDeadline() {
	wall := time.Now()
	now := wall.Sub(clockBase)
	if o.deadline-now >= o.timeout {
		return
	}
	o.deadline = now + o.timeout + deadlineSlack
	_ = o.conn.SetWriteDeadline(wall.Add(o.timeout + deadlineSlack))
}

// headerLen is the length of the header appendHeader writes for n bytes.
func headerLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// appendHeader appends the header of an unmasked final frame.
func appendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		return binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}
