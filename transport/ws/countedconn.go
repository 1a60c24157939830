package ws

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/transport/wire"
)

// frameScanner follows the WebSocket frames of a client's byte stream by
// their headers alone (RFC 6455 §5.2), skipping payloads, so that frames
// gws takes in without calling the handler — the continuation frames of a
// fragmented message — are counted too. It holds no payload: a header is
// at most 14 bytes.
type frameScanner struct {
	hdr  [14]byte
	have uint8
	// ends: the current frame is a data frame with FIN, the last of its
	// message.
	ends bool
	// held is the payload the data frames of the message under way have
	// announced, until the frame that ends it has passed: what gws holds
	// for the message (the frame's buffer, taken at its header, and the
	// fragments before it). Saturates.
	held uint32
	// starts counts the messages begun (first frames' headers), so that
	// a message is told from the next (wrapping).
	starts uint32
	skip   uint64 // payload bytes of the current frame still to pass
}

// opContinuation is the opcode of a fragmented message's later frames.
const opContinuation = 0x0

// outOfRange is what scan returns for a header whose payload length is
// over the largest frame the gateway takes (wire.MaxFrameBytes): gws would
// refuse it with 1009 too, but a 64-bit length with its top bit set (RFC
// 6455 forbids it) it reads as a negative length, which passes its check
// and panics (v1.8.9).
const outOfRange = -1

// scan passes b and returns how many continuation frames' headers
// complete in it, or outOfRange when a header announces a payload longer
// than the largest frame (the stream cannot go on). It calls nothing: it runs
// under the read loop of every connection (see countedConn.Read).
//
//go:noinline
func (f *frameScanner) scan(b []byte) (continuations int) {
	for len(b) > 0 {
		if f.skip > 0 {
			k := uint64(len(b))
			if k > f.skip {
				k = f.skip
			}
			f.skip -= k
			b = b[k:]
			if f.skip == 0 && f.ends {
				f.held, f.ends = 0, false
			}
			continue
		}
		need := f.headerLen()
		k := copy(f.hdr[f.have:need], b)
		f.have += uint8(k)
		b = b[k:]
		if f.have < 2 || f.have < f.headerLen() {
			continue // the header goes on in the next bytes
		}
		f.skip = f.payloadLen()
		f.have = 0
		if f.skip > wire.MaxFrameBytes {
			return outOfRange
		}
		op := f.hdr[0] & 0x0f
		if op == opContinuation {
			continuations++
		}
		f.ends = false
		if op < 0x8 { // a data frame; control frames come between them
			if op != opContinuation {
				f.starts++
			}
			f.held = uint32(min(uint64(f.held)+f.skip, math.MaxUint32))
			f.ends = f.hdr[0]&0x80 != 0
			if f.skip == 0 && f.ends {
				f.held, f.ends = 0, false
			}
		}
	}
	return continuations
}

// headerLen is the length of the header being read, as far as its first
// two bytes tell: 2 until they are in.
func (f *frameScanner) headerLen() uint8 {
	if f.have < 2 {
		return 2
	}
	n := uint8(2)
	switch f.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if f.hdr[1]&0x80 != 0 {
		n += 4 // the mask
	}
	return n
}

func (f *frameScanner) payloadLen() uint64 {
	switch n := f.hdr[1] & 0x7f; n {
	case 126:
		return uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
	case 127:
		return binary.BigEndian.Uint64(f.hdr[2:10])
	default:
		return uint64(n)
	}
}

// countedConn is a client's connection as gws reads it: every
// continuation frame that passes is counted against the connection's
// rate limit, like the frames the handler sees (session.admit), so that
// a client cannot send frames the limit never hears of. Writes go to the
// connection itself (rawConn).
type countedConn struct {
	net.Conn
	tcp    *net.TCPConn // Conn, when it is one
	frames frameScanner
	ws     *gws.Conn // set once upgraded, before the read loop starts

	// recv is the receive budget the connection's partial messages are
	// charged to, with its source address's part of it; partial, what it
	// holds of it (nil until its first partial message). See hold.
	recv    *receiver
	partial *partialMessage
}

// Read is the one frame a countedConn adds under the read loop of every
// connection, idle ones included: it is kept small, reads a TCP
// connection as one (a static call) and scans with a function that calls
// nothing. The read goroutine's stack, an idle connection's largest
// cost, stays within its first 4 KiB only with little room to spare
// (Gateway.readLoop gave up its defers for it; docs/benchmarks.md,
// "Every frame counted"): measure idle connections after a change here.
func (c *countedConn) Read(p []byte) (n int, err error) {
	if c.tcp != nil {
		n, err = c.tcp.Read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	if k := c.frames.scan(p[:n]); k != 0 {
		if k == outOfRange {
			return 0, c.refuse()
		}
		c.continued(k)
	}
	if c.frames.held != 0 || c.partial != nil && c.partial.charged != 0 {
		if refused := c.hold(n < len(p)); refused != nil {
			return 0, refused
		}
	}
	return n, err
}

var (
	errReceiveBudget  = errors.New("ws: the receive budget is full")
	errPartialTimeout = errors.New("ws: a message took too long to arrive")
)

// hold charges what the message under way holds now (frames.held) to
// the receive budget, or gives back what it no longer holds. It charges,
// and checks the message's time, only after a read that drained the
// socket (drained: it returned less than it could take) with the message
// still partial — when its client has not sent the rest — so a message
// that arrives whole is never charged, however many reads of the
// gateway's buffer it takes, nor closed for a pause of the server's own.
// It closes the connection when the budget (or the address's part of it)
// has no room, or when the message has been under way for longer than
// Config.MaxPartialMessage. Only the read loop calls it.
//
//go:noinline
func (c *countedConn) hold(drained bool) error {
	if c.recv == nil {
		return nil
	}
	m := c.partial
	if m == nil {
		m = &partialMessage{}
		c.partial = m
	}
	g, held := c.recv.g, int64(c.frames.held)
	if held < m.charged {
		g.receiving.give(m.charged-held, c.recv.share)
		m.charged = held
	}
	if held == 0 {
		return nil
	}
	now := monotonic()
	if c.frames.starts != m.started || m.since == 0 {
		m.started, m.since = c.frames.starts, now // another message
	}
	if !drained {
		return nil
	}
	if d := held - m.charged; d > 0 {
		if !g.receiving.take(d, c.recv.share) {
			return c.close(wire.CloseBusy, wire.ReasonBusy, errReceiveBudget)
		}
		m.charged = held
	}
	if now-m.since > g.cfg.MaxPartialMessage {
		return c.close(wire.CloseMessageTimeout, wire.ReasonMessageTimeout, errPartialTimeout)
	}
	return nil
}

// receiver is a receive budget as the connections of one source address
// (or those not counted per address, share nil) are charged to it.
type receiver struct {
	g     *Gateway
	share *share
}

// partialMessage is what a connection's message under way holds of the
// receive budget: charged (frames.held as of the last read that drained
// the socket), and since when (monotonic) the message, the started'th,
// was first seen partial.
type partialMessage struct {
	charged int64
	since   time.Duration
	started uint32
}

// letGo gives back what the connection's partial message held, once its
// read loop has ended.
func (c *countedConn) letGo() {
	if m := c.partial; m != nil && m.charged > 0 {
		c.recv.g.receiving.give(m.charged, c.recv.share)
		m.charged = 0
	}
}

// close closes the connection with code and reason from its read loop
// (counted with the other closes, see session.closeFromReader), and
// returns err to end it; the read that brought it is dropped.
func (c *countedConn) close(code uint16, reason string, err error) error {
	if c.ws != nil {
		if s := sessionOf(c.ws); s != nil {
			s.closeFromReader(code, reason)
			return err
		}
	}
	_ = c.Conn.Close()
	return err
}

// errFrameTooLarge ends the read loop of a connection whose client
// announced a frame longer than the largest (see outOfRange).
var errFrameTooLarge = errors.New("ws: a frame's length is over the largest frame")

// refuse closes the connection with 1009, as for any frame over the
// limit, before gws reads the header that announced it; the read that
// brought it is dropped.
//
//go:noinline
func (c *countedConn) refuse() error {
	return c.close(wire.CloseTooBig, wire.ReasonTooBig, errFrameTooLarge)
}

// continued counts k continuation frames against the connection's rate
// limit (the handler counts the others: OnMessage, OnPing, OnPong).
func (c *countedConn) continued(k int) {
	if c.ws == nil {
		return
	}
	s := sessionOf(c.ws)
	now := time.Now()
	for range k {
		if s == nil || s.closed.Load() {
			return
		}
		s.admit(now)
	}
}

// rawConn is the connection under a countedConn: writes skip the wrapper
// (net.Buffers writes a TCP connection's buffers with one writev only
// when it is the TCP connection itself).
func rawConn(c net.Conn) net.Conn {
	if cc, ok := c.(*countedConn); ok {
		return cc.Conn
	}
	return c
}
