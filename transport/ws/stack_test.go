//go:build !race

package ws_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/ws"
)

// An idle connection's largest cost is its read goroutine's stack, and
// that goroutine parks a few dozen bytes under its first 4 KiB: one more
// frame on the read path doubles every connection's stack (it did once:
// docs/benchmarks.md, "Every frame counted"). The race detector's
// instrumentation makes frames larger, hence the build tag. It measures
// in a process of its own: stacks freed by earlier tests would hide the
// new ones.
func TestIdleConnectionStackStaysSmall(t *testing.T) {
	if os.Getenv(stackChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionStackStaysSmall$", "-test.v")
		cmd.Env = append(os.Environ(), stackChild+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "bytes of stack a connection") {
			t.Fatalf("the measuring process: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Lease = time.Hour })
	const n = 300
	addr := strings.TrimPrefix(g.srv.URL, "http://")
	open := func(i int) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade %d: %v, %v", i, resp, err)
		}
		tok, err := g.tokens.Mint("idle", domain.DeviceID(fmt.Sprint("d", i)), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		hello := fmt.Sprintf(`{"id":"h","type":"hello","token":%q}`, tok)
		if _, err := c.Write(maskedText([]byte(hello))); err != nil {
			t.Fatal(err)
		}
		var h [2]byte // the welcome's header is enough: the hello was taken
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("welcome %d: %v", i, err)
		}
		return c
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		open(i)
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("%d bytes of stack a connection", per)
	if per > 6<<10 {
		t.Fatalf("an idle connection holds %d bytes of goroutine stacks, over 6 KiB: its read goroutine's stack doubled", per)
	}
}

// stackChild, set in its environment, makes the test process the one
// that measures.
const stackChild = "PARLEY_WS_STACK_CHILD"

// maskedText is a client's text frame of payload.
func maskedText(payload []byte) []byte {
	b := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	mask := [4]byte{9, 8, 7, 6}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}
