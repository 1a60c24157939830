package ws

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
	"golang.org/x/time/rate"
)

// session is one WebSocket connection. Fields set at hello are written by
// the connection's read goroutine before the session is routed, and only
// read afterwards.
type session struct {
	g    *Gateway
	conn *gws.Conn
	out  *outbox

	connectedAt time.Time
	// limiter paces every frame a client sends, control frames included;
	// flood, made at the first refusal, counts the frames refused by it.
	// A client that goes on far past its refusals is closed (CloseFlood).
	// Both are the read goroutine's.
	limiter *rate.Limiter
	flood   *rate.Limiter

	// greeting is where the connection is with its hello (greetNone,
	// greetPending, greetDone). The worker says hello; the read goroutine
	// only reads the state, to route the frames that follow.
	greeting atomic.Int32
	// account, device and uid are written by a hello's registration,
	// under the gateway's lock, and only if the connection was not
	// removed first (removed, guarded by the same lock): what removes it
	// reads them under that lock.
	account domain.AccountID
	device  domain.DeviceID
	uid     domain.UniqueID
	removed bool
	// tokenExpires is the expiry of the token of the hello or last renew.
	tokenExpires time.Time

	// queue holds the requests waiting for the connection's worker, which
	// runs them one at a time, in order, on a goroutine of its own while
	// there are any.
	queueMu sync.Mutex
	queue   []queuedRequest
	working bool
	// cancelWork cancels the context of the worker's run under way, if
	// one is: closing the connection makes the request it is waiting on
	// (a send, a lagging read model) give up instead of holding the
	// worker. An idle connection has no context (see workerPool).
	cancelWork context.CancelFunc

	leaseUntil atomic.Int64 // Unix nanoseconds; 0 before hello
	lastRead   atomic.Int64 // Unix nanoseconds
	closed     atomic.Bool
	// routed is set once the hello's claim of the cluster route succeeded.
	routed atomic.Bool

	// presence is the connection's presence subscriptions, guarded by the
	// gateway's presence hub.
	presence sessionPresence
}

// queuedRequest is a request read off the connection, and when.
type queuedRequest struct {
	req wire.Request
	at  time.Duration // monotonic()
}

func newSession(g *Gateway, conn *gws.Conn, now time.Time) *session {
	cfg := g.cfg
	s := &session{g: g, conn: conn, connectedAt: now,
		limiter: rate.NewLimiter(rate.Limit(cfg.RatePerSecond), cfg.RateBurst),
	}
	var sh *share // its address's part of the budget
	if w, ok := conn.Session().Load(helloKey); ok {
		sh = w.(*helloWait).share
	}
	s.out = newOutbox(rawConn(conn.NetConn()), int64(cfg.HelloQueueBytes), g.budget, sh, cfg.WriteTimeout, func() {
		s.closeWith(wire.CloseSlowConsumer, wire.ReasonSlowConsumer, true)
	}, cfg.Observer)
	s.lastRead.Store(now.UnixNano())
	return s
}

// The states of a connection's hello.
const (
	greetNone    int32 = iota // no hello yet, or the last one failed
	greetPending              // a hello waits on the worker
	greetDone                 // welcomed
)

// welcomed reports whether the connection's hello succeeded.
func (s *session) welcomed() bool { return s.greeting.Load() == greetDone }

// FloodFactor is how far past its rate limit a connection may go on
// sending before it is closed with CloseFlood: it may have this many times
// its burst of frames refused in a burst, and this many times its rate
// refused per second.
const FloodFactor = 10

// admit counts one frame against the rate limit. It reports whether the
// frame may be served; a frame that may not is answered rate_limited (a
// request) or ignored (a control frame), and a connection that floods far
// beyond that is closed.
func (s *session) admit(now time.Time) bool {
	if s.limiter.AllowN(now, 1) {
		return true
	}
	if s.flood == nil {
		cfg := s.g.cfg
		s.flood = rate.NewLimiter(rate.Limit(cfg.RatePerSecond*FloodFactor), cfg.RateBurst*FloodFactor)
	}
	if !s.flood.AllowN(now, 1) {
		s.closeWith(wire.CloseFlood, wire.ReasonFlood, true)
	}
	return false
}

// alive reports whether the connection has been heard from within the
// heartbeat interval.
func (s *session) alive(now time.Time) bool {
	return !s.closed.Load() && now.UnixNano()-s.lastRead.Load() <= int64(s.g.cfg.Heartbeat)
}

// expiry says why the sweeper must close s at now, if it must.
func (s *session) expiry(now time.Time) (code uint16, reason string) {
	if s.closed.Load() {
		return 0, ""
	}
	n := now.UnixNano()
	switch lease := s.leaseUntil.Load(); {
	case lease == 0 && now.Sub(s.connectedAt) > s.g.cfg.HelloTimeout:
		return wire.CloseHelloTimeout, wire.ReasonHelloTimeout
	case lease != 0 && n > lease:
		return wire.CloseLeaseExpired, wire.ReasonLeaseExpired
	case n-s.lastRead.Load() > int64(s.g.cfg.Heartbeat):
		return wire.CloseHeartbeatTimeout, wire.ReasonHeartbeatTimeout
	}
	return 0, ""
}

// renewLease extends the lease from now and returns its end. A lease never
// outlives the token it was granted on, with the clock skew the token's
// check allows: past that a client renews with a fresh token or
// reconnects. (Without the skew, a token taken within it would get a lease
// that had ended already, and a close at once.)
func (s *session) renewLease(now time.Time) time.Time {
	until := now.Add(s.g.cfg.Lease)
	if end := s.tokenExpires.Add(auth.Leeway); !s.tokenExpires.IsZero() && end.Before(until) {
		until = end
	}
	s.leaseUntil.Store(until.UnixNano())
	return until
}

// reply encodes f and queues it.
func (s *session) reply(f wire.ServerFrame) {
	if f.Type == wire.TypeAck { // every send's answer: encoded without reflection
		s.write(wire.AppendAck(nil, &f))
		return
	}
	b, err := json.Marshal(f)
	if err != nil {
		s.g.log.Error("cannot encode a frame", "type", f.Type, "err", err)
		return
	}
	s.write(b)
}

// fail answers request id with an error code.
func (s *session) fail(id string, code wire.Code, text string) {
	s.reply(wire.ServerFrame{ID: id, Type: wire.TypeError, Code: string(code), Error: text})
}

// write queues an encoded text frame without blocking. A connection whose
// queue is full is closed as a slow consumer: it reconnects and syncs, so
// nothing is lost silently (I5).
func (s *session) write(frame []byte) { s.writeShared(frame, 1) }

// writeShared queues frame, an encoding queued on shares connections at
// once (a push), on the connection (outbox.pushShared).
func (s *session) writeShared(frame []byte, shares int32) {
	if s.closed.Load() {
		return
	}
	s.out.pushShared(opText, frame, shares)
}

// pong queues the answer to a WebSocket ping.
func (s *session) pong(payload []byte) {
	if s.closed.Load() {
		return
	}
	s.out.push(opPong, payload)
}

// enqueue hands req to the connection's worker, starting it if it is idle.
// It reports false, queueing nothing, when MaxPendingRequests wait already.
func (s *session) enqueue(req wire.Request) bool {
	s.queueMu.Lock()
	if len(s.queue) >= s.g.cfg.MaxPendingRequests {
		s.queueMu.Unlock()
		return false
	}
	s.queue = append(s.queue, queuedRequest{req: req, at: monotonic()})
	start := !s.working
	s.working = true
	s.queueMu.Unlock()
	if start && s.g.startWorker() {
		s.g.pool.run(s.work)
	}
	return true
}

// work runs queued requests until none is left or the connection
// closes, under ctx (the pool goroutine's), which closing the connection
// cancels with cancel.
func (s *session) work(ctx context.Context, cancel context.CancelFunc) {
	defer s.g.workers.Done()
	s.queueMu.Lock()
	s.cancelWork = cancel
	s.queueMu.Unlock()
	for {
		s.queueMu.Lock()
		if len(s.queue) == 0 || s.closed.Load() {
			s.queue, s.working, s.cancelWork = nil, false, nil
			s.queueMu.Unlock()
			return
		}
		q := s.queue[0]
		s.queue[0] = queuedRequest{}
		s.queue = s.queue[1:]
		s.queueMu.Unlock()
		// The reader stops reading while replies pile up unread, but up
		// to MaxPendingRequests were read already: their replies wait
		// for room too, so that pipelined syncs (a megabyte each) slow
		// the connection down rather than overflow its queue and close it.
		s.waitRoom()
		if s.closed.Load() {
			continue // closed while it waited: nobody reads the reply
		}
		s.g.cfg.Observer.RequestStarted(monotonic() - q.at)
		s.g.handler.dispatch(ctx, s, q.req)
	}
}

// waitRoom holds the reader while the connection's replies pile up
// unread (see outbox.waitRoom).
func (s *session) waitRoom() { s.out.waitRoom() }

// stopWork cancels the context of the worker's run under way, if one is.
// Call it once s.closed is set: a run that starts later sees it and ends.
func (s *session) stopWork() {
	s.queueMu.Lock()
	if s.cancelWork != nil {
		s.cancelWork()
	}
	s.queueMu.Unlock()
}

// closeWith closes the connection with a close code and reason. Unless
// immediate, frames already queued (an error reply, say) are written first.
func (s *session) closeWith(code uint16, reason string, immediate bool) {
	if !s.markClosed(code, reason) {
		return
	}
	do := func() { s.writeClose(code, reason) }
	if immediate {
		s.out.discard()
		go do()
		return
	}
	s.out.closeAfter(do)
}

// closeFromReader closes the connection as closeWith(immediate) does,
// from the connection's read loop, writing the close frame before it
// returns: the read loop ends next, and gws would write a close of its
// own first.
func (s *session) closeFromReader(code uint16, reason string) {
	if s.markClosed(code, reason) {
		s.out.discard()
	}
	s.writeClose(code, reason)
}

// writeClose writes the close frame, within a second, and closes the
// connection.
func (s *session) writeClose(code uint16, reason string) {
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = s.conn.WriteClose(code, []byte(reason))
}

// markClosed marks s closed, once, and counts why; it reports whether
// this call closed it.
func (s *session) markClosed(code uint16, reason string) bool {
	if !s.closed.CompareAndSwap(false, true) {
		return false
	}
	s.stopWork()
	// Not the uid: the sweeper may close a connection whose hello is
	// writing it at this moment.
	s.g.log.Debug("closing connection", "code", code, "reason", reason)
	s.g.cfg.Observer.Closed(reason)
	return true
}
