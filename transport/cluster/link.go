// Package cluster connects gateway instances: the push projection finds each
// device's instance in the global route table and forwards pushes for
// devices on other instances over an internal, authenticated, persistent
// and batched WebSocket link to that instance's ip:port.
package cluster

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
)

// Path is where every gateway accepts links from its peers.
const Path = "/internal/link"

// Forward is one push for some devices of the receiving instance, or a kick
// of a device whose route another instance took over.
type Forward struct {
	// UIDs are the devices to write Frame to.
	UIDs []domain.UniqueID `json:"uids,omitempty"`
	// Frame is the encoded push frame, written as is.
	Frame json.RawMessage `json:"frame,omitempty"`
	// At is when the message was accepted, Unix milliseconds (for metrics).
	At int64 `json:"at,omitempty"`
	// Kick names a device to close, with KickReason: "replaced" (another
	// instance took its route) or "slow_consumer" (a push for it was lost
	// on the way; closing it makes it resync, I5).
	Kick       domain.UniqueID `json:"kick,omitempty"`
	KickReason string          `json:"kickReason,omitempty"`
}

// Local is what a receiving instance does with forwards: its gateway.
type Local interface {
	DeliverUIDs(uids []domain.UniqueID, frame []byte, accepted time.Time)
	Kick(uid domain.UniqueID, reason string)
}

// MaxBatch bounds the forwards in one link frame.
const MaxBatch = 256

// Receiver serves Path: it authenticates the peer with the cluster secret
// and hands every forward to the local gateway.
type Receiver struct {
	secret   []byte
	local    Local
	log      *slog.Logger
	upgrader *gws.Upgrader
}

// NewReceiver returns the link endpoint of a gateway.
func NewReceiver(secret []byte, local Local, log *slog.Logger) *Receiver {
	r := &Receiver{secret: secret, local: local, log: log}
	r.upgrader = gws.NewUpgrader(&receiverEvents{r: r}, &gws.ServerOption{
		ReadMaxPayloadSize: 64 << 20,
		Authorize: func(req *http.Request, _ gws.SessionStorage) bool {
			got := []byte(req.Header.Get("Authorization"))
			want := []byte("Bearer " + string(r.secret))
			return len(r.secret) > 0 && auth.SecretEqual(got, want)
		},
		Recovery: gws.Recovery,
	})
	return r
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	conn, err := r.upgrader.Upgrade(w, req)
	if err != nil {
		r.log.Warn("refused a cluster link", "remote", req.RemoteAddr, "err", err)
		return
	}
	go conn.ReadLoop()
}

type receiverEvents struct {
	gws.BuiltinEventHandler
	r *Receiver
}

// envelope is one frame of a link from sender to receiver: a batch of
// forwards and its sequence number on the link (1, 2, ... for the life of
// the sending process, across reconnects).
type envelope struct {
	Seq uint64    `json:"seq"`
	Fwd []Forward `json:"fwd"`
}

// ackFrame is the receiver's answer: every batch up to Ack was handed to
// the local gateway.
type ackFrame struct {
	Ack uint64 `json:"ack"`
}

func (e *receiverEvents) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	var env envelope
	if err := json.Unmarshal(m.Bytes(), &env); err != nil || env.Seq == 0 {
		e.r.log.Error("bad frame on a cluster link", "err", err)
		return
	}
	for _, f := range env.Fwd {
		if f.Kick != "" {
			e.r.local.Kick(f.Kick, f.KickReason)
			continue
		}
		e.r.local.DeliverUIDs(f.UIDs, f.Frame, time.UnixMilli(f.At))
	}
	b, _ := json.Marshal(ackFrame{Ack: env.Seq})
	_ = c.SetWriteDeadline(time.Now().Add(AckTimeout))
	if err := c.WriteMessage(gws.OpcodeText, b); err != nil {
		e.r.log.Warn("cannot acknowledge forwards on a cluster link", "err", err)
	}
}

// Links holds one outgoing link per peer instance.
type Links struct {
	secret []byte
	log    *slog.Logger
	// QueueLen bounds the forwards waiting for one peer.
	queueLen int

	mu     sync.Mutex
	links  map[string]*link
	closed bool
	wg     sync.WaitGroup
}

// NewLinks returns an empty set of links.
func NewLinks(secret []byte, queueLen int, log *slog.Logger) *Links {
	if queueLen <= 0 {
		queueLen = 16384
	}
	return &Links{secret: secret, log: log, queueLen: queueLen, links: map[string]*link{}}
}

// ErrQueueFull: the peer does not keep up; the forward was not queued.
var ErrQueueFull = errors.New("cluster link queue is full")

// Send queues f for instance, opening the link if needed. It never blocks.
func (l *Links) Send(instance string, f Forward) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("cluster links are closed")
	}
	lk := l.links[instance]
	if lk == nil {
		lk = &link{parent: l, instance: instance, q: make(chan Forward, l.queueLen), stop: make(chan struct{})}
		l.links[instance] = lk
		l.wg.Add(1)
		go lk.run()
	}
	l.mu.Unlock()
	select {
	case lk.q <- f:
		return nil
	default:
		return ErrQueueFull
	}
}

// maxDialFailures is how many dials in a row (about a minute) a link tries
// before it gives up on its peer.
const maxDialFailures = 35

// forget removes lk, if it is still the link of its peer.
func (l *Links) forget(lk *link) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.links[lk.instance] == lk {
		delete(l.links, lk.instance)
	}
}

// Close stops every link; queued forwards are dropped.
func (l *Links) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	for _, lk := range l.links {
		close(lk.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

type link struct {
	parent   *Links
	instance string
	q        chan Forward
	stop     chan struct{}

	// seq numbers the batches sent on the link; acked is the highest the
	// peer acknowledged (written by the connection's read goroutine).
	seq   uint64
	acked atomic.Uint64

	mu      sync.Mutex
	dropped map[domain.UniqueID]struct{} // devices that missed a forward
	// unacked are the batches written and not yet acknowledged, oldest
	// first; unackedN counts their forwards.
	unacked  []sentBatch
	unackedN int
}

// sentBatch is a batch on its way: the devices it carried and when it was
// written.
type sentBatch struct {
	seq  uint64
	n    int // forwards
	uids []domain.UniqueID
	at   time.Time
}

// AckTimeout is how long a written batch may go unacknowledged before the
// link counts as broken: its connection is closed, and the devices of
// every unacknowledged forward are closed with slow_consumer once the
// link carries again, so that they resync (I5).
const AckTimeout = 3 * time.Second

// sent records batch seq as written.
func (lk *link) sent(seq uint64, batch []Forward, now time.Time) {
	var uids []domain.UniqueID
	for _, f := range batch {
		if f.Kick != "" {
			uids = append(uids, f.Kick)
			continue
		}
		uids = append(uids, f.UIDs...)
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	lk.unacked = append(lk.unacked, sentBatch{seq: seq, n: len(batch), uids: uids, at: now})
	lk.unackedN += len(batch)
}

// settle forgets the batches the peer acknowledged and reports whether the
// oldest one left is overdue and how many forwards are on their way.
func (lk *link) settle(now time.Time) (overdue bool, inFlight int) {
	acked := lk.acked.Load()
	lk.mu.Lock()
	defer lk.mu.Unlock()
	i := 0
	for i < len(lk.unacked) && lk.unacked[i].seq <= acked {
		i++
	}
	if i > 0 {
		lk.unacked = append(lk.unacked[:0], lk.unacked[i:]...)
		lk.unackedN = 0
		for _, b := range lk.unacked {
			lk.unackedN += b.n
		}
	}
	return len(lk.unacked) > 0 && now.Sub(lk.unacked[0].at) > AckTimeout, lk.unackedN
}

// broke moves the devices of every unacknowledged batch to the kicks owed
// (they may or may not have got their pushes) and reports how many.
func (lk *link) broke() int {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.dropped == nil {
		lk.dropped = map[domain.UniqueID]struct{}{}
	}
	n := 0
	for _, b := range lk.unacked {
		for _, u := range b.uids {
			if len(lk.dropped) < maxDropped {
				lk.dropped[u] = struct{}{}
				n++
			}
		}
	}
	lk.unacked, lk.unackedN = nil, 0
	return n
}

// maxDropped bounds the devices a link remembers to close.
const maxDropped = 100000

// Drop records that a forward for uids could not be queued: once the link
// runs again it closes those devices with slow_consumer so that they
// resync, rather than leaving them to notice the gap at their next push,
// which may never come (I5).
func (l *Links) Drop(instance string, uids []domain.UniqueID) {
	l.mu.Lock()
	lk := l.links[instance]
	l.mu.Unlock()
	if lk == nil {
		return
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.dropped == nil {
		lk.dropped = map[domain.UniqueID]struct{}{}
	}
	for _, u := range uids {
		if len(lk.dropped) >= maxDropped {
			return
		}
		lk.dropped[u] = struct{}{}
	}
}

// takeDropped returns the kicks owed for dropped forwards, at most
// MaxBatch, and forgets them.
func (lk *link) takeDropped() []Forward {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	var out []Forward
	for u := range lk.dropped {
		if len(out) == MaxBatch {
			break
		}
		out = append(out, Forward{Kick: u, KickReason: "slow_consumer"})
		delete(lk.dropped, u)
	}
	return out
}

// run keeps one connection to the peer and writes the queue to it in
// batches: whatever is queued when a write starts goes in one frame. Each
// batch carries a sequence number and is remembered until the peer
// acknowledges it. A connection that ends, fails a write or leaves a batch
// unacknowledged for AckTimeout is closed; the devices of its
// unacknowledged batches are then closed with slow_consumer, first thing
// on the next connection, so a forward lost in a broken socket is never
// lost silently, and no later push reaches such a device before its close.
func (lk *link) run() {
	defer lk.parent.wg.Done()
	backoff := 50 * time.Millisecond
	var conn *gws.Conn
	defer func() {
		if conn != nil {
			_ = conn.WriteClose(1000, nil)
		}
	}()
	tick := time.NewTicker(AckTimeout / 4)
	defer tick.Stop()
	batch := make([]Forward, 0, MaxBatch)
	var dead chan struct{} // closed when the current connection ends
	failures := 0
	breakConn := func(why string, err error) {
		_ = conn.NetConn().Close()
		conn = nil
		if n := lk.broke(); n > 0 {
			lk.parent.log.Warn("cluster link broke; devices with unacknowledged forwards will be closed", "peer", lk.instance, "why", why, "devices", n, "err", err)
		}
	}
	for {
		if conn != nil {
			overdue, _ := lk.settle(time.Now())
			select {
			case <-dead: // the peer went away: reconnect before writing
				breakConn("closed", nil)
			default:
				if overdue {
					breakConn("no acknowledgement within "+AckTimeout.String(), nil)
				}
			}
		}
		if conn == nil {
			d := make(chan struct{})
			c, _, err := gws.NewClient(&linkEvents{dead: d, lk: lk}, &gws.ClientOption{
				Addr:             "ws://" + lk.instance + Path,
				RequestHeader:    http.Header{"Authorization": {"Bearer " + string(lk.parent.secret)}},
				HandshakeTimeout: 2 * time.Second,
			})
			if err != nil {
				failures++
				if failures >= maxDialFailures {
					// The peer is gone (scaled down, moved): drop the link
					// and its queue; a later Send opens a new one.
					lk.parent.log.Warn("giving up on cluster link; dropping its queue", "peer", lk.instance, "queued", len(lk.q), "err", err)
					lk.parent.forget(lk)
					return
				}
				if failures == 1 || failures%10 == 0 {
					lk.parent.log.Warn("cannot open cluster link", "peer", lk.instance, "attempt", failures, "err", err)
				}
				select {
				case <-lk.stop:
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			failures = 0
			conn, dead, backoff = c, d, 50*time.Millisecond
			go c.ReadLoop() // reads acknowledgements, answers pings, notices the close
		}
		if kicks := lk.takeDropped(); len(kicks) > 0 {
			// Queue order no longer matters for these devices: they will
			// reconnect and sync. Kicks go first.
			batch = append(batch[:0], kicks...)
		} else {
			if _, inFlight := lk.settle(time.Now()); inFlight >= lk.parent.queueLen {
				// As many forwards on their way as the queue holds: wait
				// for acknowledgements; the queue fills meanwhile.
				select {
				case <-lk.stop:
					return
				case <-dead:
				case <-tick.C:
				}
				continue
			}
			select {
			case <-lk.stop:
				return
			case <-dead:
				continue
			case <-tick.C:
				continue
			case f := <-lk.q:
				batch = append(batch[:0], f)
			}
		}
	drain:
		for len(batch) < MaxBatch {
			select {
			case f := <-lk.q:
				batch = append(batch, f)
			default:
				break drain
			}
		}
		lk.seq++
		b, err := json.Marshal(envelope{Seq: lk.seq, Fwd: batch})
		if err != nil {
			lk.parent.log.Error("cannot encode forwards", "err", err)
			continue
		}
		lk.sent(lk.seq, batch, time.Now())
		if err := lk.write(conn, b); err != nil {
			breakConn("write failed", err)
		}
	}
}

func (lk *link) write(conn *gws.Conn, b []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return conn.WriteMessage(gws.OpcodeText, b)
}

// linkEvents reads the peer's acknowledgements and notices that it closed
// the link.
type linkEvents struct {
	gws.BuiltinEventHandler
	dead chan struct{}
	lk   *link
}

func (e *linkEvents) OnClose(*gws.Conn, error) { close(e.dead) }

func (e *linkEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	var a ackFrame
	if err := json.Unmarshal(m.Bytes(), &a); err != nil {
		return
	}
	for {
		cur := e.lk.acked.Load()
		if a.Ack <= cur || e.lk.acked.CompareAndSwap(cur, a.Ack) {
			return
		}
	}
}
