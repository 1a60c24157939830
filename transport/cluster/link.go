// Package cluster connects gateway instances: the push projection finds each
// device's instance in the global route table and forwards pushes for
// devices on other instances over an internal, authenticated, persistent
// and batched WebSocket link to that instance's ip:port.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
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

func (e *receiverEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	var batch []Forward
	if err := json.Unmarshal(m.Bytes(), &batch); err != nil {
		e.r.log.Error("bad frame on a cluster link", "err", err)
		return
	}
	for _, f := range batch {
		if f.Kick != "" {
			e.r.local.Kick(f.Kick, f.KickReason)
			continue
		}
		e.r.local.DeliverUIDs(f.UIDs, f.Frame, time.UnixMilli(f.At))
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

// Reachable implements ws.Prober: whether instance accepts a TCP connection.
func (l *Links) Reachable(ctx context.Context, instance string) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", instance)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
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

	mu      sync.Mutex
	dropped map[domain.UniqueID]struct{} // devices that missed a forward
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
// batches: whatever is queued when a write starts goes in one frame.
func (lk *link) run() {
	defer lk.parent.wg.Done()
	backoff := 50 * time.Millisecond
	var conn *gws.Conn
	defer func() {
		if conn != nil {
			_ = conn.WriteClose(1000, nil)
		}
	}()
	batch := make([]Forward, 0, MaxBatch)
	var dead chan struct{} // closed when the current connection ends
	var pending []byte     // a batch whose write failed, sent again once
	failures := 0
	for {
		if conn != nil {
			select {
			case <-dead: // the peer went away: reconnect before writing
				conn = nil
			default:
			}
		}
		if conn == nil {
			d := make(chan struct{})
			c, _, err := gws.NewClient(&linkEvents{dead: d}, &gws.ClientOption{
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
			go c.ReadLoop() // answers pings, notices the close
		}
		if pending != nil {
			if err := lk.write(conn, pending); err != nil {
				lk.parent.log.Warn("cluster link broke again; forwards lost", "peer", lk.instance, "err", err)
				_ = conn.NetConn().Close()
				conn, pending = nil, nil
				continue
			}
			pending = nil
		}
		if kicks := lk.takeDropped(); len(kicks) > 0 {
			// Queue order no longer matters for these devices: they will
			// reconnect and sync. Kicks go first.
			batch = append(batch[:0], kicks...)
		} else {
			select {
			case <-lk.stop:
				return
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
		b, err := json.Marshal(batch)
		if err != nil {
			lk.parent.log.Error("cannot encode forwards", "err", err)
			continue
		}
		if err := lk.write(conn, b); err != nil {
			// Reconnect and send this batch once more: devices ignore a
			// push of a msgid they hold, so a double delivery is harmless.
			lk.parent.log.Warn("cluster link broke; resending", "peer", lk.instance, "forwards", len(batch), "err", err)
			_ = conn.NetConn().Close()
			conn, pending = nil, b
		}
	}
}

func (lk *link) write(conn *gws.Conn, b []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return conn.WriteMessage(gws.OpcodeText, b)
}

// linkEvents notices that the peer closed the link.
type linkEvents struct {
	gws.BuiltinEventHandler
	dead chan struct{}
}

func (e *linkEvents) OnClose(*gws.Conn, error) { close(e.dead) }
