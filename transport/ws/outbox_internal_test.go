package ws

import (
	"io"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkOutboxIdleWrite queues one 200-byte frame at a time on an idle
// connection's outbox and waits for it to be written, as a push to a
// device that gets a message now and then does: what a frame costs the
// server besides the syscall.
func BenchmarkOutboxIdleWrite(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		b.Fatal("no connection")
	}
	defer server.Close()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	o := newOutbox(server, 1<<20, NewBudget(1<<30), nil, 10*time.Second, func() { b.Error("overflow") }, noObserver{})
	frame := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		o.push(opText, frame)
		for writing := true; writing; {
			runtime.Gosched()
			o.mu.Lock()
			writing = o.writing
			o.mu.Unlock()
		}
	}
}

// A write that stalls fails only once it has stalled for longer than the
// timeout, although a flush moves the deadline about once a second rather
// than with every write: a frame written when less than the timeout is
// left of the deadline the previous write set still gets the whole
// timeout.
func TestOutboxStalledWriteFailsAfterTheTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	server, client := net.Pipe()
	defer client.Close()
	failed := make(chan time.Time, 1)
	o := newOutbox(server, 1<<20, NewBudget(1<<30), nil, timeout, func() {
		select {
		case failed <- time.Now():
		default:
		}
	}, noObserver{})
	frame := make([]byte, 100)
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(client, make([]byte, 2+len(frame)))
		read <- err
	}()
	o.push(opText, frame)
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	time.Sleep(deadlineSlack + timeout/2) // timeout/2 left of the deadline
	start := time.Now()
	o.push(opText, frame) // nobody reads it
	select {
	case at := <-failed:
		if d := at.Sub(start); d < timeout {
			t.Errorf("the stalled write failed after %v, before its timeout of %v", d, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled write never failed")
	}
}

// A close queued behind a write that then fails still runs: the write's
// failure discards the queue (and closes the session, which is closed
// already), and a close dropped with it would leave the connection open
// for as long as its client keeps it.
func TestOutboxRunsACloseQueuedBehindAFailedWrite(t *testing.T) {
	const timeout = 200 * time.Millisecond
	server, client := net.Pipe()
	defer client.Close()
	overflowed := make(chan struct{}, 1)
	var o *outbox
	o = newOutbox(server, 1<<20, NewBudget(1<<30), nil, timeout, func() {
		o.discard() // as a session's slow-consumer close does
		overflowed <- struct{}{}
	}, noObserver{})
	o.push(opText, make([]byte, 100)) // nobody reads it: the write stalls
	closed := make(chan struct{})
	o.closeAfter(func() { close(closed) })
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the close queued behind a failed write never ran")
	}
	<-overflowed
}

// A frame's wait is told once its write has finished, and counts the time
// the write was held up by a client that did not read: it is the part of
// a client's latency the connection's queue adds.
func TestOutboxTellsHowLongAFrameWaited(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	waits := make(chan time.Duration, 2)
	o := newOutbox(server, 1<<20, NewBudget(1<<30), nil, 10*time.Second, func() { t.Error("overflow") }, frameWaits{waits: waits})
	frame := make([]byte, 100)
	const held = 100 * time.Millisecond
	o.push(opText, frame)
	o.push(opText, frame)
	select {
	case d := <-waits:
		t.Fatalf("a wait of %v was told before the frame was read", d)
	case <-time.After(held):
	}
	if _, err := io.ReadFull(client, make([]byte, 2*(2+len(frame)))); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case d := <-waits:
			if d < held {
				t.Errorf("a frame written after %v was told to have waited %v", held, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no wait was told for a written frame")
		}
	}
}

// frameWaits is an Observer that hands on every frame's wait.
type frameWaits struct {
	noObserver
	waits chan time.Duration
}

func (w frameWaits) FrameWritten(d time.Duration) { w.waits <- d }

// The connections of one source address queue at most 1/ShareDivisor of
// the budget together: filling it from one address overflows that
// address's connections, and another address's still queues.
func TestBudgetSharePerAddress(t *testing.T) {
	const limit = 8 << 20
	b := NewBudget(limit)
	// The gateway's accounting of addresses, as ServeHTTP uses it.
	g := &Gateway{cfg: Config{MaxConnections: 100, MaxConnectionsPerIP: 1000, MaxHellosPerIP: 64}, sources: map[string]*sourceConns{}}
	var waits []*helloWait
	join := func(source string) *share {
		sc, status, _, _ := g.admit(source)
		if status != 0 {
			t.Fatalf("%s refused: %d", source, status)
		}
		w := g.waiting(source, sc)
		waits = append(waits, w)
		return w.share
	}
	// Overflows are counted from the flushes' goroutines too (their
	// writes fail when the pipes close at the end).
	stalled := func(sh *share, overflowed *atomic.Int64) *outbox {
		server, client := net.Pipe() // nobody reads: writes stall
		t.Cleanup(func() { server.Close(); client.Close() })
		o := newOutbox(server, 4<<20, b, sh, time.Minute, func() { overflowed.Add(1) }, noObserver{})
		return o
	}
	frame := make([]byte, 64<<10)
	var overA, overB atomic.Int64
	a1, a2 := stalled(join("192.0.2.1"), &overA), stalled(join("192.0.2.1"), &overA)
	if a1.share != a2.share {
		t.Fatal("two connections of one address have two shares")
	}
	for i := 0; overA.Load() == 0 && i < 64; i++ {
		if i%2 == 0 {
			a1.push(opText, frame)
		} else {
			a2.push(opText, frame)
		}
		if used := a1.share.used.Load(); used > limit/ShareDivisor {
			t.Fatalf("one address holds %d bytes, past its part %d", used, limit/ShareDivisor)
		}
	}
	if overA.Load() == 0 {
		t.Fatal("64 frames from one address and no connection of it closed")
	}
	o := stalled(join("192.0.2.2"), &overB)
	for i := 0; i < 8; i++ {
		if !o.push(opText, frame) {
			t.Fatalf("another address's frame %d refused (budget used %d of %d)", i, b.Used(), int64(limit))
		}
	}
	if overB.Load() != 0 {
		t.Fatal("another address's connection overflowed")
	}
	for _, w := range waits {
		g.release(w)
	}
	if len(g.sources) != 0 {
		t.Errorf("%d shares left after every connection left", len(g.sources))
	}
}

// A frame that finds the budget full closes the connections furthest
// behind — whose oldest unwritten frame waited longest — not its own: a
// reader that keeps up is not closed for readers that stalled. When its
// own connection is furthest behind, it is the one closed. Where only the
// source address's part is full, the one of that address furthest behind
// is closed, never another address's.
func TestFullBudgetClosesTheReadersFurthestBehind(t *testing.T) {
	const limit = 2 << 20
	b := NewBudget(limit)
	open := func(sh *share, reads bool) *budgetConn { return openBudgetConn(t, b, sh, reads) }
	frame := make([]byte, 64<<10)
	fill := func(c *budgetConn, room int64) {
		t.Helper()
		for b.Used()+cost(frame) <= room {
			if !c.o.push(opText, frame) {
				t.Fatalf("a frame refused while filling, %d of %d bytes used", b.Used(), room)
			}
		}
		time.Sleep(2 * time.Millisecond) // the next one stalls later
	}
	waitEmpty := func(c *budgetConn) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for oldest, _ := c.o.waiting(); oldest != 0; oldest, _ = c.o.waiting() {
			if time.Now().After(deadline) {
				t.Fatal("the reader's queue did not drain")
			}
			time.Sleep(time.Millisecond)
		}
	}

	// The whole budget: two stalled readers fill it, the first one first;
	// a reader that keeps up gets its frame, and the first is closed.
	first, second, reader := open(nil, false), open(nil, false), open(nil, true)
	fill(first, limit/2)
	fill(second, limit)
	held := b.Used() - limit/2
	if !reader.o.push(opText, frame) {
		t.Fatal("the reader's frame was refused")
	}
	if first.overflowed.Load() != 1 || second.overflowed.Load() != 0 || reader.overflowed.Load() != 0 {
		t.Fatalf("closed: first %d, second %d, reader %d; want the first only", first.overflowed.Load(), second.overflowed.Load(), reader.overflowed.Load())
	}
	if first.o.push(opText, frame) {
		t.Fatal("the closed connection took a frame")
	}
	waitEmpty(reader)
	if b.Used() < held-cost(frame) || b.Used() > held+cost(frame) {
		t.Fatalf("the budget counts %d bytes, want about the second's %d", b.Used(), held)
	}

	// Its own connection is furthest behind: it is the one closed.
	fill(second, limit)
	if second.o.push(opText, frame) || second.overflowed.Load() != 1 {
		t.Fatalf("the connection furthest behind took its own frame (closed %d times)", second.overflowed.Load())
	}
	second.o.discard() // as its session's close does
	if b.Used() != 0 {
		t.Fatalf("the budget counts %d bytes after every stalled connection closed", b.Used())
	}

	// One address's part: its stalled connection is closed, not another
	// address's, which stalled earlier.
	var addrA, addrB share
	other, a1, a2 := open(&addrB, false), open(&addrA, false), open(&addrA, true)
	fill(other, limit/ShareDivisor-cost(frame))
	for addrA.used.Load()+cost(frame) <= limit/ShareDivisor {
		if !a1.o.push(opText, frame) {
			t.Fatal("a frame refused while filling the share")
		}
	}
	if !a2.o.push(opText, frame) {
		t.Fatal("the reader's frame was refused by its address's share")
	}
	if a1.overflowed.Load() != 1 || a2.overflowed.Load() != 0 || other.overflowed.Load() != 0 {
		t.Fatalf("closed: a1 %d, a2 %d, other %d; want a1 only", a1.overflowed.Load(), a2.overflowed.Load(), other.overflowed.Load())
	}
}

// A reader a few frames behind holds more bytes than each of many readers
// that stalled with a frame or two (a group's large messages to devices
// behind one address): it is the stalled ones that are closed, since
// their frames waited longer, not the reader that holds the most.
func TestFullBudgetClosesStalledReadersBeforeOneThatHoldsMore(t *testing.T) {
	const limit = 8 << 20
	b := NewBudget(limit)
	var addr share
	part := int64(limit / ShareDivisor)
	frame := make([]byte, 32<<10)
	var stalled []*budgetConn
	for addr.used.Load()+2*cost(frame) <= part-4*cost(frame) {
		c := openBudgetConn(t, b, &addr, false)
		c.o.push(opText, frame) // written at once into the pipe, where it stalls
		stalled = append(stalled, c)
	}
	time.Sleep(2 * time.Millisecond)
	// A reader that is, for now, three frames behind: 96 KiB, more than
	// any stalled one holds, queued after all of theirs.
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	reader := &budgetConn{}
	reader.o = newOutbox(server, 4<<20, b, &addr, time.Minute, func() { reader.overflowed.Add(1) }, noObserver{})
	for range 3 {
		if !reader.o.push(opText, frame) {
			t.Fatal("the reader's frame was refused while filling")
		}
	}
	for addr.used.Load()+cost(frame) <= part {
		if !reader.o.push(opText, frame) {
			t.Fatal("the reader's frame was refused while filling the share")
		}
	}
	if !reader.o.push(opText, frame) || reader.overflowed.Load() != 0 {
		t.Fatalf("the reader was closed (%d) for %d readers that stalled", reader.overflowed.Load(), len(stalled))
	}
	closed := 0
	for _, c := range stalled {
		closed += int(c.overflowed.Load())
	}
	if closed == 0 {
		t.Fatal("no stalled reader was closed")
	}
	go func() { _, _ = io.Copy(io.Discard, client) }() // the reader catches up
}

// budgetConn is an outbox of a test of the budget, over a pipe that is
// read or never read, and how often it was closed as a slow consumer.
type budgetConn struct {
	o          *outbox
	overflowed atomic.Int64
}

// openBudgetConn opens a budgetConn in b, counted in sh; unless reads, its
// first write stalls.
func openBudgetConn(t *testing.T, b *Budget, sh *share, reads bool) *budgetConn {
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	if reads {
		go func() { _, _ = io.Copy(io.Discard, client) }()
	}
	c := &budgetConn{}
	c.o = newOutbox(server, 4<<20, b, sh, time.Minute, func() { c.overflowed.Add(1) }, noObserver{})
	return c
}

// A frame larger than each of the slow queues that fill the budget still
// closes them, as many as it takes (a full sync page for a reader,
// against many queues of 100 KiB), not the reader it is for.
func TestFullBudgetClosesManySmallQueuesForALargeFrame(t *testing.T) {
	const limit = 4 << 20
	b := NewBudget(limit)
	small := make([]byte, 100<<10)
	var slow []*budgetConn
	for b.Used()+cost(small) <= limit {
		c := openBudgetConn(t, b, nil, false)
		if !c.o.push(opText, small) {
			t.Fatal("a slow queue's frame refused while filling")
		}
		slow = append(slow, c)
	}
	reader := openBudgetConn(t, b, nil, true)
	if !reader.o.push(opText, make([]byte, 1<<20)) {
		t.Fatal("the reader's frame was refused")
	}
	closed := 0
	for _, c := range slow {
		closed += int(c.overflowed.Load())
	}
	if reader.overflowed.Load() != 0 || closed < 10 || closed > 11 {
		t.Fatalf("closed %d of %d slow queues and the reader %d times; want the ten or eleven it takes, not the reader", closed, len(slow), reader.overflowed.Load())
	}
}

// A budget lists its open outboxes, whichever closes first, once each.
func TestBudgetListsItsOpenOutboxes(t *testing.T) {
	b := NewBudget(1 << 20)
	var outs []*outbox
	for range 5 {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		outs = append(outs, newOutbox(server, 1<<20, b, nil, time.Minute, func() {}, noObserver{}))
	}
	for _, i := range []int{2, 0, 4, 2} { // the middle, the last listed, the first, again
		outs[i].discard()
	}
	var listed []*outbox
	for o := b.loose; o != nil; o = o.next {
		listed = append(listed, o)
	}
	if len(listed) != 2 || !slices.Contains(listed, outs[1]) || !slices.Contains(listed, outs[3]) {
		t.Fatalf("listed %d outboxes, want the two still open", len(listed))
	}
	if listed[1].prev != listed[0] || listed[0].prev != nil {
		t.Fatal("the list's back links are broken")
	}
	// An address's outboxes are listed with its share, which the budget
	// forgets once the last of them closes.
	var sh share
	var mine []*outbox
	for range 2 {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		mine = append(mine, newOutbox(server, 1<<20, b, &sh, time.Minute, func() {}, noObserver{}))
	}
	if sh.members == nil || sh.members.next == nil || len(b.shares) != 1 {
		t.Fatalf("the share lists its outboxes: %v, %d shares known", sh.members != nil, len(b.shares))
	}
	mine[0].discard()
	if sh.members != mine[1] || len(b.shares) != 1 {
		t.Fatal("the share lost its other outbox")
	}
	mine[1].discard()
	if sh.members != nil || len(b.shares) != 0 {
		t.Fatalf("the budget still knows the share of closed outboxes (%d)", len(b.shares))
	}
}

// A payload queued on many connections at once (a push's one encoding)
// counts about once against the shared budget, and whole against each
// connection's own limit; the budget gets it all back as the connections
// write it or close.
func TestBudgetCountsASharedPushOnce(t *testing.T) {
	const n = 100
	b := NewBudget(64 << 20)
	payload := make([]byte, 64<<10)
	var conns []*budgetConn
	for i := range n {
		c := openBudgetConn(t, b, nil, i%2 == 0) // half read, half stall
		if !c.o.pushShared(opText, payload, n) {
			t.Fatal("a shared push was refused")
		}
		c.o.mu.Lock()
		queued := c.o.queued
		c.o.mu.Unlock()
		if queued != cost(payload) && queued != 0 {
			t.Fatalf("a connection counts %d bytes of the push, want its whole %d", queued, cost(payload))
		}
		conns = append(conns, c)
	}
	if most := int64(len(payload) + n*maxHeader); b.Used() > most {
		t.Fatalf("the budget counts %d bytes for one %d-byte push to %d connections, want at most %d", b.Used(), len(payload), n, most)
	}
	for _, c := range conns {
		c.o.discard()
	}
	if b.Used() != 0 {
		t.Fatalf("the budget counts %d bytes after every connection wrote or closed", b.Used())
	}
}
