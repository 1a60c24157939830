package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
	"github.com/parley-chat/parley/transport/ws"
)

// rawWS is a WebSocket client written from scratch on a TCP socket, so that
// a test can do what a hostile client does: write frames without reading,
// pipeline, flood control frames.
type rawWS struct {
	net.Conn
	br *bufio.Reader
}

// dialRaw upgrades a TCP connection to url's /ws and returns it, or the
// HTTP status of a refused upgrade.
func dialRaw(t *testing.T, addr string) (*rawWS, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + fmt.Sprintf("%x", key)[:22] + "==\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp.StatusCode
	}
	return &rawWS{Conn: c, br: br}, resp.StatusCode
}

// holdRaw opens n connections to addr, each of which must be upgraded;
// they close with the test.
func holdRaw(t *testing.T, addr string, n int) []*rawWS {
	t.Helper()
	held := make([]*rawWS, n)
	for i := range held {
		ws, status := dialRaw(t, addr)
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("connection %d refused with %d", i, status)
		}
		held[i] = ws
	}
	return held
}

// frame encodes a masked client frame.
func frame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// read reads one server frame: its opcode and payload.
func (r *rawWS) read() (byte, []byte, error) {
	var h [2]byte
	if _, err := ioReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := ioReadFull(r.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := ioReadFull(r.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	_, err := ioReadFull(r.br, p)
	return h[0] & 0x0f, p, err
}

func ioReadFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := br.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readText reads frames until a text frame (skipping pongs) and decodes it;
// a close frame gives its code.
func (r *rawWS) readText() (wire.ServerFrame, uint16, error) {
	for {
		op, p, err := r.read()
		if err != nil {
			return wire.ServerFrame{}, 0, err
		}
		switch op {
		case 0x8:
			if len(p) >= 2 {
				return wire.ServerFrame{}, binary.BigEndian.Uint16(p), nil
			}
			return wire.ServerFrame{}, 1005, nil
		case 0x1:
			var f wire.ServerFrame
			err := json.Unmarshal(p, &f)
			return f, 0, err
		}
	}
}

// heapWatch samples the live heap of this process (the server runs in it)
// while an attack runs, and reports the most it grew.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w := &heapWatch{base: ms.HeapInuse, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > w.peak.Load() {
					w.peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return w
}

// liveHeap is the heap in use after a collection: what is held, not
// garbage.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// growth stops watching and returns the peak growth in bytes.
func (w *heapWatch) growth() int64 {
	close(w.stop)
	<-w.done
	return int64(w.peak.Load()) - int64(w.base)
}

// legit checks that an ordinary client can still connect and send.
func legit(t *testing.T, s *server, account string) {
	t.Helper()
	c, err := s.tryDial(account, "phone")
	if err != nil {
		t.Fatalf("a legitimate client cannot connect during the attack: %v", err)
	}
	defer c.Close()
	if _, err := c.Send(ctxT(t), client.Target{Account: "bob"}, fmt.Sprint("legit-", time.Now().UnixNano()), "text", "still here"); err != nil {
		t.Fatalf("a legitimate client cannot send during the attack: %v", err)
	}
}

// Hostile clients through the real listener: each attack gets its
// documented answer, costs the server a bounded amount of memory, and a
// legitimate client keeps working meanwhile.
func TestHostileClients(t *testing.T) {
	s := startServer(t, nil)

	t.Run("ping flood before hello, never reading", func(t *testing.T) {
		ping := frame(0x9, []byte(strings.Repeat("p", 125)))
		// At full speed: closed within moments (4010, unread).
		ws, _ := dialRaw(t, s.n.Addr())
		batch := []byte(strings.Repeat(string(ping), 64))
		w := watchHeap()
		var werr error
		sent := 0
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); sent += 64 {
			_ = ws.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, werr = ws.Write(batch); werr != nil {
				if ne, ok := werr.(net.Error); ok && ne.Timeout() {
					continue // the server stopped reading us: backpressure
				}
				break
			}
		}
		if werr == nil {
			t.Errorf("the flooding connection is still open after %d pings", sent)
		}
		// Paced just under the flood threshold (1,000 pings a second, ten
		// times the rate), for 3 s: the server answers what the rate
		// allows, stops reading when the unread pongs fill the small
		// queue of a connection without hello, and holds no more.
		paced, _ := dialRaw(t, s.n.Addr())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					_ = paced.SetWriteDeadline(time.Now().Add(5 * time.Millisecond))
					_, _ = paced.Write([]byte(strings.Repeat(string(ping), 10)))
				}
			}
		}()
		legit(t, s, "during-ping-flood")
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()
		grew := w.growth()
		t.Logf("full speed: closed after %d pings (%v); paced for 3 s; heap grew by at most %d KiB", sent, werr, grew>>10)
		if grew > 16<<20 {
			t.Errorf("a ping flood grew the heap by %d MiB, want under 16 MiB", grew>>20)
		}
	})

	t.Run("unknown type before hello gets hello_required", func(t *testing.T) {
		ws, _ := dialRaw(t, s.n.Addr())
		if _, err := ws.Write(frame(0x1, []byte(`{"id":"1","type":"teleport"}`))); err != nil {
			t.Fatal(err)
		}
		f, code, err := ws.readText()
		if err != nil || code != 0 || f.Code != string(wire.CodeHelloRequired) || f.ID != "1" {
			t.Fatalf("got %+v close %d err %v, want hello_required", f, code, err)
		}
	})

	t.Run("requests written with the hello wait for its answer", func(t *testing.T) {
		ws, _ := dialRaw(t, s.n.Addr())
		var buf []byte
		for _, req := range []string{
			fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("eager", "phone", time.Hour)),
			`{"id":"p","type":"ping"}`,
			`{"id":"s","type":"send","to":"bob","clientMsgId":"e1","body":"right away"}`,
			fmt.Sprintf(`{"id":"h2","type":"hello","token":%q}`, s.token("eager", "phone", time.Hour)),
			`{"id":"r","type":"renew"}`,
		} {
			buf = append(buf, frame(0x1, []byte(req))...)
		}
		if _, err := ws.Write(buf); err != nil {
			t.Fatal(err)
		}
		// The welcome comes first; the other requests are answered in
		// order, except that a ping or a renewal may overtake the replies
		// of the requests before it (the protocol says so of both).
		types := map[string]string{"h": wire.TypeWelcome, "p": wire.TypePong, "s": wire.TypeAck, "h2": wire.TypeError, "r": wire.TypeRenewed}
		var order []string
		for len(order) < len(types) {
			f, code, err := ws.readText()
			if err != nil || code != 0 {
				t.Fatalf("after %v: close %d err %v", order, code, err)
			}
			if f.Message != nil {
				continue // the own push of the send
			}
			if types[f.ID] != f.Type {
				t.Fatalf("after %v: got %+v, want %s for %q", order, f, types[f.ID], f.ID)
			}
			if f.ID == "h2" && f.Code != string(wire.CodeHelloRepeated) {
				t.Fatalf("second hello: %+v, want hello_repeated", f)
			}
			order = append(order, f.ID)
		}
		var queued []string
		for _, id := range order {
			if id != "p" && id != "r" {
				queued = append(queued, id)
			}
		}
		if order[0] != "h" || !slices.Equal(queued, []string{"h", "s", "h2"}) {
			t.Fatalf("replies in the order %v: want the welcome first and h, s, h2 in order", order)
		}
	})

	t.Run("an unknown type behind a hello is unknown_type, and the hello holds", func(t *testing.T) {
		ws, _ := dialRaw(t, s.n.Addr())
		buf := frame(0x1, []byte(fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("newer", "phone", time.Hour))))
		buf = append(buf, frame(0x1, []byte(`{"id":"n","type":"teleport"}`))...)
		buf = append(buf, frame(0x1, []byte(`{"id":"g","type":"groups"}`))...)
		if _, err := ws.Write(buf); err != nil {
			t.Fatal(err)
		}
		got := map[string]wire.ServerFrame{}
		for len(got) < 3 {
			f, code, err := ws.readText()
			if err != nil || code != 0 {
				t.Fatalf("after %v: close %d err %v", got, code, err)
			}
			got[f.ID] = f
		}
		if got["h"].Type != wire.TypeWelcome || got["n"].Code != string(wire.CodeUnknownType) || got["g"].Type != wire.TypeGroupList {
			t.Fatalf("replies %+v: want the welcome, unknown_type and the group list", got)
		}
	})

	t.Run("requests written behind a bad hello get hello_required", func(t *testing.T) {
		ws, _ := dialRaw(t, s.n.Addr())
		buf := frame(0x1, []byte(`{"id":"h","type":"hello","token":"not-a-token"}`))
		buf = append(buf, frame(0x1, []byte(`{"id":"p","type":"ping"}`))...)
		if _, err := ws.Write(buf); err != nil {
			t.Fatal(err)
		}
		f, code, err := ws.readText()
		if err != nil || code != 0 || f.ID != "h" || f.Code != string(wire.CodeUnauthorized) {
			t.Fatalf("got %+v close %d err %v, want unauthorized", f, code, err)
		}
		f, code, err = ws.readText()
		if err == nil && code == 0 && (f.ID != "p" || f.Code != string(wire.CodeHelloRequired)) {
			t.Fatalf("got %+v, want hello_required or the close", f)
		}
	})

	t.Run("2000 pipelined sends are each answered, never closed", func(t *testing.T) {
		ws, _ := dialRaw(t, s.n.Addr())
		hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("burst", "phone", time.Hour))
		if _, err := ws.Write(frame(0x1, []byte(hello))); err != nil {
			t.Fatal(err)
		}
		if f, _, err := ws.readText(); err != nil || f.Type != wire.TypeWelcome {
			t.Fatalf("hello: %+v %v", f, err)
		}
		const n = 2000
		answers := make(chan wire.ServerFrame, n)
		var closeCode atomic.Uint32
		go func() {
			for {
				f, code, err := ws.readText()
				if err != nil {
					return
				}
				if code != 0 {
					closeCode.Store(uint32(code))
					return
				}
				answers <- f
			}
		}()
		var buf []byte
		for i := 0; i < n; i++ {
			req := fmt.Sprintf(`{"id":"%d","type":"send","to":"bob","clientMsgId":"b%d","body":"burst %d"}`, i, i, i)
			buf = append(buf, frame(0x1, []byte(req))...)
		}
		go func() { _, _ = ws.Write(buf) }()
		acked, limited := 0, 0
		timeout := time.After(60 * time.Second)
		for acked+limited < n {
			select {
			case f := <-answers:
				switch {
				case f.Type == wire.TypeAck:
					acked++
				case f.Code == string(wire.CodeRateLimited):
					limited++
				case f.Message != nil:
					// the push of an accepted send, to its sender too
				default:
					t.Fatalf("unexpected answer %+v", f)
				}
			case <-timeout:
				t.Fatalf("%d acked, %d rate_limited, %d never answered; close code %d", acked, limited, n-acked-limited, closeCode.Load())
			}
		}
		t.Logf("%d acked, %d rate_limited", acked, limited)
		if c := closeCode.Load(); c != 0 {
			t.Errorf("connection closed with %d", c)
		}
	})

	t.Run("sync of huge messages is cut by bytes, not refused", func(t *testing.T) {
		// A time budget of its own: the sender also gets, and decodes, the
		// push of each of its 171 huge messages (27 s of 30 with the box
		// loaded by other builds; a few seconds alone).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sender := s.dial("huge", "phone")
		body := strings.Repeat("\x01", 16<<10) // JSON escapes each byte to six
		const n = 171
		for i := 0; i < n; i++ {
			if _, err := sender.Send(ctx, client.Target{Account: "reader"}, fmt.Sprint("h", i), "text", body); err != nil {
				t.Fatal(err)
			}
		}
		reader := s.dial("reader", "phone")
		var got int
		var last int64
		pages := 0
		for {
			f, err := reader.Do(ctx, wire.Request{Type: wire.TypeSync, Conversation: "d:huge:reader", LastMsgID: last, Limit: 200})
			if err != nil {
				t.Fatalf("sync page %d: %v", pages, err)
			}
			pages++
			got += len(f.Messages)
			for _, m := range f.Messages {
				if m.MsgID <= last {
					t.Fatalf("page %d repeats msgid %d", pages, m.MsgID)
				}
				last = m.MsgID
			}
			if f.Next == nil || f.Next.LastMsgID != last {
				t.Fatalf("page %d: next %+v, last message %d", pages, f.Next, last)
			}
			if !f.HasMore {
				break
			}
		}
		if got != n || pages < 2 {
			t.Errorf("synced %d of %d messages in %d pages", got, n, pages)
		}
		assertAlive(t, reader)
	})

	t.Run("upgrades past the per-address cap are refused", func(t *testing.T) {
		capped := startServer(t, func(c *node.Config) { c.Gateway.MaxConnectionsPerIP = 3 })
		holdRaw(t, capped.n.Addr(), 3)
		if _, status := dialRaw(t, capped.n.Addr()); status != http.StatusTooManyRequests {
			t.Fatalf("fourth connection from one address: %d, want 429", status)
		}
	})

	t.Run("new connections past the per-address rate are refused", func(t *testing.T) {
		// A client that connects and closes as fast as it can: a burst of
		// --max-connections-per-ip, then --new-connections-per-ip a second.
		s := startServer(t, func(c *node.Config) { c.Gateway.MaxConnectionsPerIP, c.Gateway.NewConnectionsPerIP = 20, 2 })
		for i := range 20 {
			c, status := dialRaw(t, s.n.Addr())
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("connection %d of the burst: %d", i, status)
			}
			c.Close()
		}
		if _, status := dialRaw(t, s.n.Addr()); status != http.StatusTooManyRequests {
			t.Fatalf("a new connection past the burst: %d, want 429", status)
		}
		time.Sleep(600 * time.Millisecond) // one more a half second
		c, status := dialRaw(t, s.n.Addr())
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("a new connection once the rate allows one: %d, want 101", status)
		}
		c.Close()
	})

	t.Run("connections waiting for their hello are capped per address", func(t *testing.T) {
		// Each may hold a frame's buffer (256 KiB) until its hello
		// timeout without a token: 64 from one address at most.
		s := startServer(t, nil) // no other subtest's connections waiting
		held := holdRaw(t, s.n.Addr(), 64)
		if _, status := dialRaw(t, s.n.Addr()); status != http.StatusTooManyRequests {
			t.Fatalf("the 65th connection without a hello: %d, want 429", status)
		}
		// One says hello: its place is free again.
		hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("waiter", "phone", time.Hour))
		if _, err := held[0].Write(frame(0x1, []byte(hello))); err != nil {
			t.Fatal(err)
		}
		if f, _, err := held[0].readText(); err != nil || f.Type != wire.TypeWelcome {
			t.Fatalf("hello: %+v %v", f, err)
		}
		if _, status := dialRaw(t, s.n.Addr()); status != http.StatusSwitchingProtocols {
			t.Fatalf("after a hello, a new connection: %d, want 101", status)
		}
		// And one that closes gives its place back.
		held[1].Close()
		waitFor(t, func() bool {
			c, status := dialRaw(t, s.n.Addr())
			if status == http.StatusSwitchingProtocols {
				c.Close()
				return true
			}
			return false
		})
	})

	t.Run("--max-connections-per-ip 0 is no limit", func(t *testing.T) {
		cfg, err := parseServe([]string{"--max-connections-per-ip", "0"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		unlimited := startServer(t, func(c *node.Config) { c.Gateway.MaxConnectionsPerIP = cfg.Gateway.MaxConnectionsPerIP })
		holdRaw(t, unlimited.n.Addr(), 1001) // the default per-address limit is 1,000
	})

	t.Run("upgrades past the global cap are refused", func(t *testing.T) {
		capped := startServer(t, func(c *node.Config) { c.Gateway.MaxConnections = 2 })
		held := holdRaw(t, capped.n.Addr(), 2)
		if _, status := dialRaw(t, capped.n.Addr()); status != http.StatusServiceUnavailable {
			t.Fatalf("third connection: %d, want 503", status)
		}
		held[0].Close()
		// The slot is freed once the server has seen the close: retry a
		// moment, as a client backing off would.
		waitFor(t, func() bool {
			ws, status := dialRaw(t, capped.n.Addr())
			if ws != nil {
				ws.Close()
			}
			return status == http.StatusSwitchingProtocols
		})
	})
}

// A client that goes on sending far past rate_limited is closed with 4010.
func TestSendFloodIsClosed(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.RatePerSecond = 5
		c.Gateway.RateBurst = 5
	})
	ws, _ := dialRaw(t, s.n.Addr())
	hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("flood", "phone", time.Hour))
	if _, err := ws.Write(frame(0x1, []byte(hello))); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var closeCode uint16
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, code, err := ws.readText()
			if err != nil {
				return
			}
			if code != 0 {
				mu.Lock()
				closeCode = code
				mu.Unlock()
				return
			}
		}
	}()
	var buf []byte
	for i := 0; i < 500; i++ {
		buf = append(buf, frame(0x1, []byte(fmt.Sprintf(`{"id":"%d","type":"ping"}`, i)))...)
	}
	_, _ = ws.Write(buf)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a flooding connection stays open")
	}
	mu.Lock()
	defer mu.Unlock()
	if closeCode != wire.CloseFlood {
		t.Fatalf("closed with %d, want %d", closeCode, wire.CloseFlood)
	}
	legit(t, s, "after-flood")
}

// The continuation frames of a message that never ends count against the
// rate limit like any frame: a client that sends them as fast as it can
// is closed 4010, not left to spend the server's CPU on frames its limit
// never hears of.
func TestContinuationFloodIsClosed(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.RatePerSecond = 5
		c.Gateway.RateBurst = 5
	})
	ws, _ := dialRaw(t, s.n.Addr())
	hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("frag", "phone", time.Hour))
	if _, err := ws.Write(frame(0x1, []byte(hello))); err != nil {
		t.Fatal(err)
	}
	if f, code, err := ws.readText(); err != nil || code != 0 || f.Type != "welcome" {
		t.Fatalf("hello: %+v, %d, %v", f, code, err)
	}
	done := make(chan uint16, 1)
	go func() {
		for {
			_, code, err := ws.readText()
			if err != nil || code != 0 {
				done <- code
				return
			}
		}
	}()
	// A text frame without FIN, then empty continuation frames without it.
	start := append([]byte{0x01, 0x80 | 1}, 1, 2, 3, 4, '{'^1)
	if _, err := ws.Write(start); err != nil {
		t.Fatal(err)
	}
	empty := []byte{0x00, 0x80, 1, 2, 3, 4}
	buf := slices.Repeat(empty, 1000)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			if code != wire.CloseFlood {
				t.Fatalf("closed with %d, want %d", code, wire.CloseFlood)
			}
			legit(t, s, "after-continuation-flood")
			return
		default:
		}
		if _, err := ws.Write(buf); err != nil {
			break // closed: the reader says how
		}
	}
	select {
	case code := <-done:
		if code != wire.CloseFlood {
			t.Fatalf("closed with %d, want %d", code, wire.CloseFlood)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a connection flooding continuation frames stays open")
	}
	legit(t, s, "after-continuation-flood")
}

// A frame header whose 64-bit length has its top bit set (RFC 6455 forbids
// it; gws v1.8.9 reads it as a negative length and panics), or that is
// over the largest frame, closes that connection with 1009 before the
// server allocates anything for it, before hello as after, and the
// server goes on.
func TestFrameLengthOutOfRangeIsClosed(t *testing.T) {
	s := startServer(t, nil)
	for i, bad := range [][]byte{
		{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, // 2^63+1
		{0x81, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4}, // 1 GiB
	} {
		for _, welcomed := range []bool{false, true} {
			ws, _ := dialRaw(t, s.n.Addr())
			if welcomed {
				hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("huge", fmt.Sprint("phone", i), time.Hour))
				if _, err := ws.Write(frame(0x1, []byte(hello))); err != nil {
					t.Fatal(err)
				}
				if f, code, err := ws.readText(); err != nil || code != 0 || f.Type != "welcome" {
					t.Fatalf("hello: %+v, %d, %v", f, code, err)
				}
			}
			if _, err := ws.Write(bad); err != nil {
				t.Fatal(err)
			}
			if _, code, err := ws.readText(); code != 1009 {
				t.Fatalf("% x, welcomed %v: closed with %d (%v), want 1009", bad[:10], welcomed, code, err)
			}
			legit(t, s, fmt.Sprintf("after-huge-length-%d-%v", i, welcomed)) // each its own: the last may not be gone yet
		}
	}
}

// Concurrent adds that each fit cannot grow a group past its limit: the one
// the log orders last is answered too_large and changes nothing.
func TestConcurrentGroupAddsStayWithinTheLimit(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	owner := s.dial("owner", "phone")
	var initial []string
	for i := 0; i < 490; i++ {
		initial = append(initial, fmt.Sprintf("m%03d", i))
	}
	g, err := owner.CreateGroup(ctx, "big", initial...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := map[string]bool{}
	for i := 0; i < 8; i++ {
		c := s.dial("owner", fmt.Sprint("dev", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			accs := []string{fmt.Sprintf("x%d-a", i), fmt.Sprintf("x%d-b", i), fmt.Sprintf("x%d-c", i), fmt.Sprintf("x%d-d", i)}
			_, err := c.Do(ctx, wire.Request{Type: wire.TypeGroupAdd, Group: g.Group, Accounts: accs})
			mu.Lock()
			defer mu.Unlock()
			switch client.CodeOf(err) {
			case "":
				for _, a := range accs {
					added[a] = true
				}
			case wire.CodeTooLarge:
			default:
				t.Errorf("add %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	f, err := owner.Do(ctx, wire.Request{Type: wire.TypeGroups})
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]bool{}
	for _, m := range f.Groups[0].Members {
		members[m] = true
	}
	if len(members) > 500 {
		t.Fatalf("the group has %d members", len(members))
	}
	for a := range added {
		if !members[a] {
			t.Errorf("%s was acknowledged as added but is not a member", a)
		}
	}
	if want := 491 + len(added); len(members) != want {
		t.Errorf("%d members, want %d (491 and %d acknowledged adds)", len(members), want, len(added))
	}
}

// A client that pipelines syncs of a megabyte each and reads them slowly
// is slowed down, never closed (protocol.md: the server never closes a
// connection because of its own replies): the requests it wrote before
// the reader stopped wait for room too.
func TestPipelinedSyncsAreSlowedNotClosed(t *testing.T) {
	s := startServer(t, nil)
	alice := s.dial("alice", "phone")
	big := strings.Repeat("<", 16<<10) // six times as long escaped: ~96 KiB a message
	for i := range 16 {
		if _, err := alice.Send(ctxT(t), client.Target{Account: "bob"}, fmt.Sprint("big", i), "", big); err != nil {
			t.Fatal(err)
		}
	}
	ws, _ := dialRaw(t, s.n.Addr())
	var buf []byte
	buf = append(buf, frame(0x1, []byte(fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("bob", "phone", time.Hour))))...)
	const syncs = 16
	for i := range syncs {
		buf = append(buf, frame(0x1, []byte(fmt.Sprintf(`{"id":"s%d","type":"sync","conversation":"d:alice:bob","limit":200}`, i)))...)
	}
	if _, err := ws.Write(buf); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	replies := 0
	for replies < syncs {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sync replies in 90 s", replies, syncs)
		}
		f, code, err := ws.readText()
		if err != nil || code != 0 {
			t.Fatalf("after %d replies: close %d, %v; want every reply", replies, code, err)
		}
		if f.Type == wire.TypeMessages {
			replies++
			time.Sleep(100 * time.Millisecond) // a slow reader: ~10 MB/s
		} else if f.Type != wire.TypeWelcome && f.Message == nil { // a push of the last sends may come too
			t.Fatalf("after %d replies: %+v", replies, f)
		}
	}
}

// An account others added to many groups of 500 still lists them: the
// groups reply is cut at about a megabyte with hasMore and pages on with
// after, where one reply of them all (4.35 MB for 130 groups) passed what
// a connection may queue and closed it with 4005, again at every try.
func TestManyLargeGroupsListInPages(t *testing.T) {
	// 40 changes of 499 accounts at once are 1.3 MB of the griefer's send
	// budget, past its default burst of 1 MiB.
	s := startServer(t, func(c *node.Config) { c.API.SendBurst = 2 << 20 })
	ctx := ctxT(t)
	owner, victim := s.dial("griefer", "phone"), s.dial("victim", "phone")
	var members []string
	for i := range 498 {
		members = append(members, fmt.Sprintf("%s%03d", strings.Repeat("m", 60), i))
	}
	const n = 40 // ~31 KiB each as listed: ~1.2 MiB in all
	for g := range n {
		if _, err := owner.CreateGroup(ctx, fmt.Sprint("g", g), append(members, "victim")...); err != nil {
			t.Fatal(err)
		}
	}
	first, err := victim.Do(ctx, wire.Request{Type: wire.TypeGroups})
	if err != nil || !first.HasMore || len(first.Groups) == 0 || len(first.Groups) >= n {
		t.Fatalf("the first page: %d groups, hasMore %v, %v; want part of %d and hasMore", len(first.Groups), first.HasMore, err, n)
	}
	all, err := victim.Groups(ctx)
	if err != nil || len(all) != n {
		t.Fatalf("every page: %d groups, %v; want %d", len(all), err, n)
	}
	if !slices.IsSortedFunc(all, func(a, b wire.GroupInfo) int { return strings.Compare(a.Group, b.Group) }) ||
		len(slices.CompactFunc(slices.Clone(all), func(a, b wire.GroupInfo) bool { return a.Group == b.Group })) != n {
		t.Errorf("the pages are not the groups once each, in id order")
	}

	// Over HTTP, the same pages.
	get := func(query string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.n.Addr()+"/api/v1/groups"+query, nil)
		req.Header.Set("Authorization", "Bearer "+s.token("victim", "web", time.Hour))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	var page struct {
		Groups  []wire.GroupInfo `json:"groups"`
		HasMore bool             `json:"hasMore"`
	}
	status, body := get("")
	if err := json.Unmarshal(body, &page); status != http.StatusOK || err != nil || !page.HasMore || len(page.Groups) != len(first.Groups) {
		t.Fatalf("HTTP first page: %d, %d groups, hasMore %v (%v)", status, len(page.Groups), page.HasMore, err)
	}
	got := len(page.Groups)
	for page.HasMore {
		last := page.Groups[len(page.Groups)-1].Group
		page.Groups, page.HasMore = nil, false
		if status, body = get("?after=" + last); status != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("HTTP page after %s: %d %s", last, status, body)
		}
		got += len(page.Groups)
	}
	if got != n {
		t.Errorf("HTTP pages hold %d groups, want %d", got, n)
	}
	if status, body := get("?after=no:colons"); status != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") {
		t.Errorf("a bad after: %d %s", status, body)
	}
}

// One account cannot send another more than its budget of bytes, however
// many connections it opens and over either transport: the excess is
// refused rate_limited with a wait, over the socket and over HTTP, while
// every acknowledged message reaches the recipient. After the wait a send
// passes again, and a service sending as the account is not counted.
func TestOneAccountSendsWithinItsBudget(t *testing.T) {
	const cred = "service-credential-for-tests"
	const msgCost = 1<<10 + 16<<10 // the cost of a plain message of 16 KiB
	const burst = 6                // such messages; the burst holds the costliest, escaped one
	s := startServer(t, func(c *node.Config) {
		c.ServiceCredential = cred
		c.API.SendRate = msgCost / 4 // one such message every 4 s
		c.API.SendBurst = burst * msgCost
		c.Gateway.RatePerSecond = 10000 // the connections' own limit is not what refuses
		c.Gateway.RateBurst = 10000
	})
	ctx := ctxT(t)
	bob := s.device("bob", "phone")
	big := strings.Repeat("x", 16<<10)

	var acked atomic.Int64
	limited, elapsed := untilRefused(t, s, "mallory", func(c *client.Client, d, i int) error {
		_, err := c.Do(ctx, wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: fmt.Sprintf("m%d-%d", d, i), Body: big})
		if err == nil {
			acked.Add(1)
		}
		return err
	})
	// The burst, and what refilled while they sent.
	most := burst + int64(elapsed/(4*time.Second))
	if acked.Load() < burst || acked.Load() > most || limited == 0 {
		t.Fatalf("acked %d (want %d..%d), refused %d (want some) in %v", acked.Load(), burst, most, limited, elapsed)
	}

	post := func(auth, body string) (int, string, wire.ServerFrame) {
		return s.api(t, http.MethodPost, auth, "/messages", body)
	}
	// The same budget over HTTP: mallory has spent it on the socket. (If
	// the budget refilled meanwhile, a send or two pass first.)
	user := "Bearer " + s.token("mallory", "web", time.Hour)
	var large string
	var status int
	var retry string
	var f wire.ServerFrame
	for i := range 3 {
		large = fmt.Sprintf(`{"to":"bob","clientMsgId":"h%d","body":%q}`, i, big)
		if status, retry, f = post(user, large); status != http.StatusOK {
			break
		}
		acked.Add(1)
	}
	if status != http.StatusTooManyRequests || f.Code != string(wire.CodeRateLimited) || f.RetryAfterMs <= 0 || retry == "" {
		t.Fatalf("HTTP send past the budget: %d %+v Retry-After %q", status, f, retry)
	}
	wait := time.Duration(f.RetryAfterMs) * time.Millisecond
	// A service is not counted.
	status, _, f = post("Bearer svc:"+cred, `{"from":{"account":"mallory","device":"bot"},"to":"bob","clientMsgId":"svc1","body":"from the service"}`)
	if status != http.StatusOK {
		t.Fatalf("service send as mallory: %d %+v", status, f)
	}
	// Group changes draw on the same budget (one of 499 accounts costs
	// more than the message just refused), and a service's do not.
	many := []string{"bob"}
	for i := range 498 {
		many = append(many, fmt.Sprint("victim", i))
	}
	if _, err := s.dial("mallory", "tablet").CreateGroup(ctx, "spam", many...); client.CodeOf(err) != wire.CodeRateLimited {
		t.Fatalf("a group change past the budget: %v, want rate_limited", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.n.Addr()+"/api/v1/groups?as=mallory", strings.NewReader(`{"name":"notices","accounts":["bob"]}`))
	req.Header.Set("Authorization", "Bearer svc:"+cred)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("a service's group change as mallory: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// After the wait it was told, the same send passes.
	time.Sleep(wait)
	if status, _, f = post(user, large); status != http.StatusOK {
		t.Fatalf("send after the wait: %d %+v", status, f)
	}
	// Every acknowledged message reached bob, and nothing refused did.
	want := int(acked.Load()) + 2
	bob.waitPushes(t, want)
	if got := bob.finalLog(t, "d:bob:mallory", want); len(got) != want {
		t.Errorf("bob holds %d messages, want %d acked + 2", len(got), acked.Load())
	}
}

// Devices that stop reading cannot get one that reads closed: when their
// queues fill every connection's budget together, the next frame closes
// the connections holding the most (4005), not the reader it is for.
func TestFullQueueBudgetClosesTheSlowReaders(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.MaxQueuedBytesTotal = 8 << 20 // less than three slow queues of 4 MiB
		c.Gateway.MaxConnectionsPerIP = ws.NoLimit
		c.Gateway.RatePerSecond = 100000
		c.Gateway.RateBurst = 100000
		c.API.SendRate = -1
	})
	ctx := ctxT(t)
	slow := []string{"slow1", "slow2", "slow3"}
	for _, a := range slow {
		// A raw connection that says hello and then never reads.
		c, _, err := gws.NewClient(gws.BuiltinEventHandler{}, &gws.ClientOption{Addr: s.url()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.NetConn().Close()
		if err := c.WriteString(fmt.Sprintf(`{"id":"1","type":"hello","token":%q}`, s.token(a, "phone", time.Hour))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return len(s.n.Gateway().Online(domain.AccountID(a))) == 1 })
	}
	reader := s.device("reader", "phone")
	sender := s.device("sender", "phone").c // reads its own messages' pushes
	online := func() (n int) {
		for _, a := range slow {
			n += len(s.n.Gateway().Online(domain.AccountID(a)))
		}
		return n
	}
	body := strings.Repeat("p", 16<<10)
	toReader := 0
	for i := 0; i < 3000 && online() > 0; i++ {
		to := "reader"
		if i%4 != 3 {
			to = slow[i%4]
		} else {
			toReader++
		}
		if _, err := sender.Send(ctx, client.Target{Account: to}, fmt.Sprint(i), "", body); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return online() == 0 })
	reader.waitPushes(t, toReader)
	if len(s.n.Gateway().Online("reader")) != 1 {
		t.Fatal("the reader was closed")
	}
	if _, m := httpGet(t, "http://"+s.n.Addr()+"/metrics"); metric(t, m, `parley_outgoing_queued_bytes_limit`) != 8<<20 {
		t.Errorf("parley_outgoing_queued_bytes_limit = %v, want %d", metric(t, m, `parley_outgoing_queued_bytes_limit`), 8<<20)
	}
}

// Reads share one budget per account across its connections and the HTTP
// API: more connections read no faster. Every kind of read takes from it,
// a service's do not, and another account's reads are not slowed.
func TestOneAccountReadsWithinItsBudget(t *testing.T) {
	const cred = "service-credential-for-tests"
	const rate, burst = 1, 20 // slow enough that each check below finds it spent
	s := startServer(t, func(c *node.Config) {
		c.ServiceCredential = cred
		c.API.ReadRate, c.API.ReadBurst = rate, burst
		c.Gateway.RatePerSecond = 10000 // the connections' own limit is not what refuses
		c.Gateway.RateBurst = 10000
	})
	ctx := ctxT(t)
	if _, err := s.dial("bob", "phone").Send(ctx, client.Target{Account: "mallory"}, "hi", "", "hi"); err != nil {
		t.Fatal(err)
	}
	const conv = "d:bob:mallory"
	var done atomic.Int64
	limited, elapsed := untilRefused(t, s, "mallory", func(c *client.Client, _, _ int) error {
		_, err := c.Sync(ctx, conv, wire.Cursor{}, 10)
		if err == nil {
			done.Add(1)
		}
		return err
	})
	if most := burst + int64(elapsed.Seconds()*rate) + 1; done.Load() < burst || done.Load() > most || limited == 0 {
		t.Fatalf("%d syncs answered (want %d..%d), %d refused (want some) in %v", done.Load(), burst, most, limited, elapsed)
	}

	// The budget is spent: every other kind of read is refused too (the
	// first may take what refilled since), and another account's reads
	// are not.
	m := s.dial("mallory", "tablet")
	for _, req := range []wire.Request{{Type: wire.TypeConversations}, {Type: wire.TypeGroups}, {Type: wire.TypeReaders, Conversation: conv, MsgID: 1}} {
		var err error
		for range 3 {
			if _, err = m.Do(ctx, req); err != nil {
				break
			}
		}
		if client.CodeOf(err) != wire.CodeRateLimited {
			t.Errorf("%s past the read budget: %v, want rate_limited", req.Type, err)
		}
	}
	if _, err := s.dial("bob", "tablet").Sync(ctx, conv, wire.Cursor{}, 10); err != nil {
		t.Errorf("another account's sync: %v", err)
	}

	get := func(auth, path string) (int, string, wire.ServerFrame) {
		return s.api(t, http.MethodGet, auth, path, "")
	}
	// The HTTP API's reads share the budget; a service's are not counted.
	user := "Bearer " + s.token("mallory", "web", time.Hour)
	var status int
	var retry string
	var f wire.ServerFrame
	for range 3 { // the first may take what refilled since
		if status, retry, f = get(user, "/conversations/"+conv+"/messages"); status != http.StatusOK {
			break
		}
	}
	if status != http.StatusTooManyRequests || f.Code != string(wire.CodeRateLimited) || f.RetryAfterMs <= 0 || retry == "" {
		t.Fatalf("an HTTP sync past the read budget: %d %+v Retry-After %q", status, f, retry)
	}
	if status, _, f := get("Bearer svc:"+cred, "/conversations/"+conv+"/messages?as=mallory"); status != http.StatusOK {
		t.Fatalf("a service's sync as mallory: %d %+v", status, f)
	}
	// After the wait it was told, the read passes.
	time.Sleep(time.Duration(f.RetryAfterMs) * time.Millisecond)
	if status, _, f := get(user, "/conversations"); status != http.StatusOK {
		t.Fatalf("a read after the wait: %d %+v", status, f)
	}
}

// api makes one request of the HTTP API (path after /api/v1; a JSON body
// unless empty) and returns its status, its Retry-After and its reply.
func (s *server) api(t *testing.T, method, auth, path, body string) (int, string, wire.ServerFrame) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, "http://"+s.n.Addr()+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f wire.ServerFrame
	_ = json.NewDecoder(resp.Body).Decode(&f)
	return resp.StatusCode, resp.Header.Get("Retry-After"), f
}

// untilRefused has three connections of account do requests together
// (do gets the connection, its number and the request's) for at least two
// seconds and until a budget has refused one rate_limited with a wait, at
// most 20 s; any other error fails the test. It returns how many were
// refused, and how long it took.
func untilRefused(t *testing.T, s *server, account string, do func(c *client.Client, d, i int) error) (int64, time.Duration) {
	t.Helper()
	var limited atomic.Int64
	started := time.Now()
	var wg sync.WaitGroup
	for d := range 3 {
		c := s.dial(account, fmt.Sprint("device", d))
		wg.Go(func() {
			for i := 0; (time.Since(started) < 2*time.Second || limited.Load() == 0) && time.Since(started) < 20*time.Second; i++ {
				err := do(c, d, i)
				var se *client.Error
				switch {
				case err == nil:
				case errors.As(err, &se) && se.Code == wire.CodeRateLimited && se.RetryAfter > 0:
					limited.Add(1)
				default:
					t.Errorf("%s: %v", account, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return limited.Load(), time.Since(started)
}

// What the messages that clients are part way through sending hold — a
// frame's buffer from its header on, a fragmented message's frames until
// its last — is bounded in bytes (per address and in all) and in time: a
// message that does not fit closes its connection 1013 busy, one left
// unfinished closes 1008 message_timeout, and what they held is given
// back.
func TestPartialMessagesAreBounded(t *testing.T) {
	s := startServer(t, func(c *node.Config) {
		c.Gateway.MaxReceivingBytesTotal = 1 << 20 // 512 KiB for one address: four frames of 128 KiB
		c.Gateway.MaxPartialMessage = 2 * time.Second
	})
	gw := s.n.Gateway()
	welcomed := func(device string) *rawWS {
		ws, _ := dialRaw(t, s.n.Addr())
		hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, s.token("partial", device, time.Hour))
		if _, err := ws.Write(frame(0x1, []byte(hello))); err != nil {
			t.Fatal(err)
		}
		if f, code, err := ws.readText(); err != nil || code != 0 || f.Type != "welcome" {
			t.Fatalf("hello: %+v, %d, %v", f, code, err)
		}
		return ws
	}
	closedWith := func(ws *rawWS, want uint16) {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, code, err := ws.readText()
			if err != nil || code != 0 {
				if code != want {
					t.Fatalf("closed with %d (%v), want %d", code, err, want)
				}
				return
			}
		}
	}
	waitHeld := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for gw.ReceivingBytes() != want {
			if time.Now().After(deadline) {
				t.Fatalf("the partial messages hold %d bytes, want %d", gw.ReceivingBytes(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A fragmented message whose client keeps the connection alive with
	// pings but never ends it.
	fragmented := welcomed("fragments")
	first := frame(0x1, []byte(`{"id":"1","type":"ping"`))
	first[0] &^= 0x80 // no FIN
	if _, err := fragmented.Write(first); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 50 {
			if _, err := fragmented.Write(frame(0x9, nil)); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	closedWith(fragmented, wire.CloseMessageTimeout)
	big := frame(0x1, make([]byte, wire.MaxFrameBytes))
	var holders []*rawWS
	for i := range 4 {
		ws := welcomed(fmt.Sprint("holder", i))
		if _, err := ws.Write(big[:len(big)-2]); err != nil { // all but its last two bytes
			t.Fatal(err)
		}
		holders = append(holders, ws)
	}
	waitHeld(4 * wire.MaxFrameBytes)
	over := welcomed("over")
	if _, err := over.Write(big[:100]); err != nil {
		t.Fatal(err)
	}
	closedWith(over, wire.CloseBusy)
	legit(t, s, "during-partial-messages")
	// A message that arrives whole is not counted, however many reads of
	// the gateway's buffer it takes: the largest body goes through while
	// the address's part is full.
	whole := s.dial("partial", "whole")
	if _, err := whole.Send(ctxT(t), client.Target{Account: "bob"}, "whole", "text", strings.Repeat("w", 16<<10)); err != nil {
		t.Fatalf("a whole message of 16 KiB while partial ones fill the budget: %v", err)
	}

	// The holders' next byte comes too late.
	time.Sleep(2*time.Second + 100*time.Millisecond)
	for _, ws := range holders {
		_, _ = ws.Write(big[len(big)-2 : len(big)-1])
		closedWith(ws, wire.CloseMessageTimeout)
	}
	waitHeld(0)
	legit(t, s, "after-partial-messages")
}

// Connections of one address outside a request — new ones and keep-alive
// ones, which may trickle the headers of a request that net/http buffers
// for up to its header timeout — are bounded like connections waiting for
// their hello: a new one past the bound is closed as it is accepted, a
// keep-alive one as it goes idle, while upgraded connections are not
// counted.
func TestConnectionsSendingHeadersAreBoundedPerAddress(t *testing.T) {
	s := startServer(t, nil)
	bound := s.n.Gateway().MaxWaitingConnsPerIP()
	if bound <= 0 {
		t.Fatalf("no bound: %d", bound)
	}
	upgraded := s.dial("upgraded", "phone")
	// bound keep-alive connections, each past one whole request: counted
	// again once idle, whatever they send next.
	conns := make([]net.Conn, bound)
	for i := range conns {
		c, err := net.Dial("tcp", s.n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conns[i] = c
	}
	trickle := func(c net.Conn) {
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000))); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(c net.Conn, what string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s past %d outside a request: %v, want it closed at once", what, bound, err)
		}
	}
	for _, c := range conns {
		trickle(c)
	}
	over, err := net.Dial("tcp", s.n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	refused(over, "a new connection")
	if _, err := upgraded.Do(ctxT(t), wire.Request{Type: wire.TypePing}); err != nil {
		t.Fatalf("an upgraded connection of the address: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := s.tryDial("after-slow-headers", "phone")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client cannot connect once the slow ones closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
