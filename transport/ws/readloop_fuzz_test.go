package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// FuzzReadLoop writes any bytes a client may send before its hello to a
// connection of a real Gateway, upgraded by ServeHTTP as in production
// (Gateway.upgrade: the countedConn, the bufio.Reader of ReadBufferBytes,
// gws's UpgradeFromConn, the read loop without a recover), and reads
// them off an in-memory connection in the chunks cuts makes, so that
// frames are split across reads wherever the engine likes. A panic on
// any of the server's goroutines kills the test binary, which the engine
// reports as a crash; a panic gws recovers in OnMessage (it logs "fatal
// error:" through the standard logger) fails the input too. So do a read
// loop that does not end once the bytes run out, and a connection the
// gateway still counts, or goroutines left, after it ends.
//
// cuts: each byte is the length of the next read the client's bytes
// arrive in, b+1 for b < 0x80 (1–128 bytes) and (b-0x7F) KiB above (1–128
// KiB); what is left after the last arrives in one read (read as far as
// the reader's buffer takes it). opts: its low two bits choose
// ReadBufferBytes (1024, the default, 256, 4096 or the largest frame, the
// range the server's flag allows); bit 2 makes every write to the client
// fail after the handshake's (a client that reset the connection); bit 3
// has stream hold only the first bytes of long payloads (see fill), so
// that frames of up to the largest size take a few bytes of input: the
// engine's minimizing of large inputs took most of its time.
//
// Every input runs on a gateway of its own, shut down after it.
func FuzzReadLoop(f *testing.F) {
	tokens, err := auth.New(auth.Config{Secret: []byte("fuzz-secret-0123456789abcdef01234567")})
	if err != nil {
		f.Fatal(err)
	}
	// gws logs the panics it recovers in OnMessage with the standard
	// logger (gws.Recovery): catch them.
	recovered := &panicLog{}
	prev, prevFlags := log.Writer(), log.Flags()
	log.SetOutput(recovered)
	f.Cleanup(func() { log.SetOutput(prev); log.SetFlags(prevFlags) })

	for _, s := range readLoopSeeds() {
		f.Add(s.stream, s.cuts, s.opts)
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte, opts byte) {
		recovered.reset()
		before := runtime.NumGoroutine()
		g, err := New(Config{
			Routes:          routes.NewMemory(),
			Instance:        "fuzz:1",
			ReadBufferBytes: []int{1024, 256, 4096, wire.MaxFrameBytes}[opts&3],
			Logger:          slog.New(slog.DiscardHandler),
			// Every input is a new connection from the same address.
			NewConnectionsPerIP: NoLimit,
		}, nil, tokens) // no request reaches the service before a hello
		if err != nil {
			t.Fatal(err)
		}
		if opts&8 != 0 {
			stream = fill(stream)
		}
		conn := newScriptedConn(chunk(stream, cuts), opts&4 != 0)
		w := &hijackable{ResponseRecorder: httptest.NewRecorder(), conn: conn}
		g.ServeHTTP(w, upgradeRequest())
		if !conn.upgraded() {
			t.Fatalf("not upgraded: %d %s", w.Code, w.Body)
		}

		ended := make(chan struct{})
		go func() { g.conns.Wait(); close(ended) }()
		// Once the bytes run out, the read loop waits for more. The
		// client hangs up when the connection is idle (a hello done on
		// the worker, the replies written), unless the server closed it
		// first.
		select {
		case <-ended:
		case <-conn.drained:
			if !settle(g, ended) {
				t.Fatalf("5s after its client's last bytes, a connection still works: %s\n%s", states(g), allStacks())
			}
			close(conn.hangup)
		case <-time.After(5 * time.Second):
			t.Fatalf("the read loop still reads 5s on\n%s", allStacks())
		}
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("the read loop still runs 5s after the client hung up\n%s", allStacks())
		}
		if msg := recovered.String(); msg != "" {
			t.Fatalf("gws recovered a panic in a handler:\n%s", msg)
		}
		g.mu.RLock()
		open, sources, all := g.open, len(g.sources), len(g.all)
		g.mu.RUnlock()
		if open != 0 || sources != 0 || all != 0 {
			t.Fatalf("after the read loop ended: %d counted, %d addresses, %d sessions", open, sources, all)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v\n%s", err, allStacks())
		}
		// What Shutdown does not wait for (a flush, a close frame's
		// write, the workers' goroutines told to stop) ends at once too.
		for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines before, %d after\n%s", before, runtime.NumGoroutine(), allStacks())
			}
			time.Sleep(50 * time.Microsecond)
		}
		if used := g.budget.Used(); used != 0 {
			t.Fatalf("the queue budget still counts %d bytes", used)
		}
		if used := g.receiving.Used(); used != 0 {
			t.Fatalf("the receive budget still counts %d bytes", used)
		}
	})
}

// chunk cuts stream into the reads that bring it (see FuzzReadLoop).
func chunk(stream, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		if len(stream) == 0 {
			break
		}
		n := int(c) + 1
		if c >= 0x80 {
			n = int(c-0x7F) << 10
		}
		n = min(n, len(stream))
		out = append(out, stream[:n])
		stream = stream[n:]
	}
	if len(stream) > 0 {
		out = append(out, stream)
	}
	return out
}

// fillAfter is how much of a payload a stream holds in fill's form.
const fillAfter = 64

// fill reads stream as frames whose payloads longer than fillAfter hold
// only their first fillAfter bytes, and completes those with zero bytes,
// up to a payload of the largest frame and 160 KiB of them in all; it
// copies the rest as it is from the first frame it cannot complete.
func fill(stream []byte) []byte {
	var out []byte
	budget := 160 << 10
	for len(stream) >= 2 {
		hl := 2
		n := uint64(stream[1] & 0x7f)
		switch n {
		case 126:
			hl += 2
		case 127:
			hl += 8
		}
		if stream[1]&0x80 != 0 {
			hl += 4
		}
		if len(stream) < hl {
			break
		}
		switch n {
		case 126:
			n = uint64(binary.BigEndian.Uint16(stream[2:4]))
		case 127:
			n = binary.BigEndian.Uint64(stream[2:10])
		}
		if n > uint64(min(wire.MaxFrameBytes, budget)) {
			break
		}
		held := min(int(n), fillAfter, len(stream)-hl)
		out = append(out, stream[:hl+held]...)
		out = append(out, make([]byte, int(n)-held)...)
		budget -= int(n) - held
		stream = stream[hl+held:]
	}
	return append(out, stream...)
}

// upgradeRequest is a client's WebSocket upgrade request.
func upgradeRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "192.0.2.1:40000"
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return r
}

// hijackable is a ResponseWriter whose connection can be taken over, as
// net/http's.
type hijackable struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (h *hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) { return h.conn, nil, nil }

// scriptedConn is the server's end of a client's connection: its reads
// bring the client's bytes in the chunks given, then wait until the
// client hangs up (io.EOF) or the server closes the connection; writes go
// nowhere, or fail after the first (the 101) when failWrites.
type scriptedConn struct {
	mu         sync.Mutex
	chunks     [][]byte
	closed     bool
	failWrites bool
	writes     int
	// drained is closed once a read finds no bytes left; hangup, closed
	// by the client, ends the read that waits then; done is closed by
	// Close.
	drained, hangup, done chan struct{}
	drainOnce             sync.Once
}

func newScriptedConn(chunks [][]byte, failWrites bool) *scriptedConn {
	return &scriptedConn{chunks: chunks, failWrites: failWrites,
		drained: make(chan struct{}), hangup: make(chan struct{}), done: make(chan struct{})}
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(c.chunks) > 0 {
		n := copy(p, c.chunks[0])
		if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
			c.chunks = c.chunks[1:]
		}
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	c.drainOnce.Do(func() { close(c.drained) })
	select {
	case <-c.hangup:
		return 0, io.EOF
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *scriptedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.writes++
	if c.failWrites && c.writes > 1 {
		return 0, syscall.ECONNRESET
	}
	return len(p), nil
}

func (c *scriptedConn) upgraded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes > 0
}

func (c *scriptedConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

func (c *scriptedConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 8080}
}
func (c *scriptedConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
}
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// panicLog is the standard logger's output, kept when it tells of a
// panic gws recovered.
type panicLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *panicLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if bytes.Contains(p, []byte("fatal error:")) {
		l.buf.Write(p)
	}
	return len(p), nil
}

func (l *panicLog) reset() { l.mu.Lock(); l.buf.Reset(); l.mu.Unlock() }

func (l *panicLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// settle waits until ended is closed, or until every connection of g is
// idle: no request on its worker, no frame being written. It reports
// false if neither comes within 5s. A connection the server closed is
// never idle: its close ends the read loop (a close once left waiting
// behind a write that then failed never ran: TestOutboxRunsACloseQueuedBehindAFailedWrite).
func settle(g *Gateway, ended <-chan struct{}) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		select {
		case <-ended:
			return true
		default:
		}
		g.mu.RLock()
		idle := true
		for s := range g.all {
			idle = idle && sessionIdle(s)
		}
		g.mu.RUnlock()
		if idle {
			return true
		}
		time.Sleep(20 * time.Microsecond)
	}
	return false
}

func sessionIdle(s *session) bool {
	s.queueMu.Lock()
	working := s.working
	s.queueMu.Unlock()
	s.out.mu.Lock()
	writing := s.out.writing
	s.out.mu.Unlock()
	return !s.closed.Load() && !working && !writing
}

// states tells what each connection of g is doing.
func states(g *Gateway) string {
	var b strings.Builder
	g.mu.RLock()
	defer g.mu.RUnlock()
	for s := range g.all {
		s.queueMu.Lock()
		working, queued := s.working, len(s.queue)
		s.queueMu.Unlock()
		s.out.mu.Lock()
		writing, closed, frames := s.out.writing, s.out.closed, len(s.out.frames)
		s.out.mu.Unlock()
		fmt.Fprintf(&b, "[session closed %v, greeting %d, worker %v with %d queued; outbox closed %v, writing %v, %d frames]",
			s.closed.Load(), s.greeting.Load(), working, queued, closed, writing, frames)
	}
	return b.String()
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// clientFrame is a client's frame of opcode carrying payload, masked
// (encodeFrame's mask) unless unmasked.
func clientFrame(opcode byte, fin bool, payload []byte, unmasked bool) []byte {
	b := encodeFrame(opcode, fin, len(payload), unmasked)
	tail := b[len(b)-len(payload):]
	for i, c := range payload {
		if unmasked {
			tail[i] = c
		} else {
			tail[i] = c ^ byte(i%4+1) // the mask is 1, 2, 3, 4
		}
	}
	return b
}

type readLoopSeed struct {
	stream, cuts []byte
	opts         byte
}

func readLoopSeeds() []readLoopSeed {
	text := func(s string) []byte { return clientFrame(0x1, true, []byte(s), false) }
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	// header is a masked frame's header announcing n bytes, with no payload.
	header := func(b0 byte, n uint64) []byte {
		h := []byte{b0, 0x80 | 127}
		h = binary.BigEndian.AppendUint64(h, n)
		return append(h, 1, 2, 3, 4)
	}
	hello := text(`{"id":"h","type":"hello","token":"not-a-token"}`)
	ping := text(`{"id":"1","type":"ping"}`)
	closeFrame := func(code uint16, reason string) []byte {
		return clientFrame(0x8, true, append(binary.BigEndian.AppendUint16(nil, code), reason...), false)
	}
	// ones cuts n bytes into one-byte reads.
	ones := func(n int) []byte { return bytes.Repeat([]byte{0}, n) }
	// big is a JSON text of n bytes.
	big := func(n int) []byte {
		const head, tail = `{"id":"b","type":"send","to":"bob","body":"`, `"}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}

	// short is frame, of a payload of n bytes, as fill takes it.
	short := func(frame []byte, n int) []byte { return frame[:len(frame)-n+min(n, fillAfter)] }

	var seeds []readLoopSeed
	add := func(stream, cuts []byte, opts byte) {
		seeds = append(seeds, readLoopSeed{stream, cuts, opts})
	}
	// Valid frames and messages, whole and a byte at a time.
	add(hello, nil, 0)
	add(hello, ones(len(hello)), 0)
	add(cat(ping, hello, ping), nil, 0)
	add(cat(clientFrame(0x9, true, []byte("hi"), false), clientFrame(0xA, true, nil, false), hello), nil, 0)
	add(clientFrame(0x2, true, []byte{0, 1, 2}, false), nil, 0)
	add(hello, nil, 4)
	add(cat(hello, closeFrame(1000, "bye")), nil, 4)
	// A fragmented message, a ping between its fragments, cut anywhere.
	frag := cat(clientFrame(0x1, false, []byte(`{"id":"h","type":`), false),
		clientFrame(0x9, true, []byte("p"), false),
		clientFrame(0x0, false, []byte(`"hello","tok`), false),
		clientFrame(0x0, true, []byte(`en":"x"}`), false))
	add(frag, nil, 0)
	add(frag, ones(len(frag)), 1)
	add(frag, []byte{1, 5, 13, 0, 40}, 2)
	// A character split between fragments; invalid UTF-8; a lone continuation.
	add(cat(clientFrame(0x1, false, []byte("\xe2\x82"), false), clientFrame(0x0, true, []byte("\xac"), false)), nil, 0)
	add(text("\xff\xfe"), nil, 0)
	add(clientFrame(0x0, true, []byte("x"), false), nil, 0)
	add(cat(clientFrame(0x1, false, []byte("a"), false), text("b")), nil, 0)
	// Control frames: at 125 and 126 bytes, fragmented, close frames of
	// every shape, reserved opcodes and bits, an unmasked frame.
	add(clientFrame(0x9, true, bytes.Repeat([]byte{'p'}, 125), false), nil, 0)
	add(clientFrame(0x9, true, bytes.Repeat([]byte{'p'}, 126), false), nil, 0)
	add(clientFrame(0x9, false, []byte("p"), false), nil, 0)
	add(clientFrame(0x8, true, nil, false), nil, 0)
	add(clientFrame(0x8, true, []byte{3}, false), nil, 0)
	add(closeFrame(1005, ""), nil, 0)
	add(closeFrame(4999, "\xff"), nil, 0)
	add(closeFrame(1000, strings.Repeat("r", 123)), nil, 0)
	add(clientFrame(0x3, true, nil, false), nil, 0)
	add(clientFrame(0xB, true, nil, false), nil, 0)
	add([]byte{0xC1, 0x80, 1, 2, 3, 4}, nil, 0) // RSV1 without a negotiated extension
	add(nil, nil, 0)
	add(clientFrame(0x1, true, []byte(`{"id":"u"}`), true), nil, 0)
	// Lengths at every boundary of the three encodings and of the largest
	// frame, a non-minimal encoding, and the largest int (over the limit).
	for _, n := range []int{125, 126, 127, 65535, 65536, wire.MaxFrameBytes - 1, wire.MaxFrameBytes} {
		add(short(clientFrame(0x1, true, big(n), false), n), nil, 8) // a JSON text's first bytes, then zeros
		add(short(encodeFrame(0x2, true, n, false), n), []byte{0x80, 0x40, 0x81}, 8|3)
	}
	add(clientFrame(0x1, true, big(1000), false), []byte{0x81, 2, 5}, 1)
	add(header(0x81, wire.MaxFrameBytes+1), nil, 0)
	add(append([]byte{0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4}, clientFrame(0x1, true, []byte("12345"), false)[6:]...), nil, 0)
	add(append(header(0x81, 5), clientFrame(0x1, true, []byte("12345"), false)[6:]...), nil, 0)
	add(header(0x81, 1<<63-1), nil, 0)
	// A message of continuations past the largest frame.
	add(cat(short(encodeFrame(0x1, false, 65536, false), 65536), short(encodeFrame(0x0, false, 65536, false), 65536),
		clientFrame(0x0, true, make([]byte, 16), false)), []byte{0xC0, 0x80, 3}, 8)
	// Lengths out of range (a 64-bit length with its top bit set), whole,
	// split in their header, behind a frame, as a continuation.
	bad := header(0x81, 1<<63)
	add(bad, nil, 0)
	add(bad, []byte{2, 0, 4}, 0)
	add(cat(hello, header(0x82, 1<<64-1)), []byte{byte(len(hello) - 1)}, 1)
	add(cat(clientFrame(0x1, false, []byte("a"), false), header(0x80, 1<<63|5)), nil, 0)
	// Floods: frames past the rate limit and its flood bound, continuations
	// (counted by countedConn) among them.
	add(bytes.Repeat(clientFrame(0xA, true, nil, false), 2300), nil, 0)
	add(cat(clientFrame(0x1, false, nil, false), bytes.Repeat(clientFrame(0x0, false, nil, false), 2300)), nil, 0)
	add(bytes.Repeat(ping, 300), nil, 4)
	return seeds
}
