package ws

import (
	"io"
	"net"
	"runtime"
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
	o := newOutbox(server, 1<<20, NewBudget(1<<30), 10*time.Second, func() { b.Error("overflow") }, noObserver{})
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
	o := newOutbox(server, 1<<20, NewBudget(1<<30), timeout, func() {
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

// A frame's wait is told once its write has finished, and counts the time
// the write was held up by a client that did not read: it is the part of
// a client's latency the connection's queue adds.
func TestOutboxTellsHowLongAFrameWaited(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	waits := make(chan time.Duration, 2)
	o := newOutbox(server, 1<<20, NewBudget(1<<30), 10*time.Second, func() { t.Error("overflow") }, frameWaits{waits: waits})
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
		o := newOutbox(server, 4<<20, b, time.Minute, func() { overflowed.Add(1) }, noObserver{})
		o.share = sh
		return o
	}
	frame := make([]byte, 64<<10)
	var overA, overB atomic.Int64
	a1, a2 := stalled(join("192.0.2.1"), &overA), stalled(join("192.0.2.1"), &overA)
	if a1.share != a2.share {
		t.Fatal("two connections of one address have two shares")
	}
	queued := 0
	for i := 0; overA.Load() == 0 && i < 64; i++ {
		if (i%2 == 0 && a1.push(opText, frame)) || (i%2 == 1 && a2.push(opText, frame)) {
			queued++
		}
	}
	if overA.Load() == 0 || int64(queued)*cost(frame) > limit/ShareDivisor {
		t.Fatalf("one address queued %d frames (%d bytes) before an overflow (%d), want at most %d bytes", queued, int64(queued)*cost(frame), overA.Load(), limit/ShareDivisor)
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
