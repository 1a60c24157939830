package ws

import (
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/wire"
	"golang.org/x/time/rate"
)

// session is one WebSocket connection. Fields set at hello are written by
// the connection's read goroutine before the session is routed, and only
// read afterwards.
type session struct {
	g    *Gateway
	conn *gws.Conn

	connectedAt time.Time
	limiter     *rate.Limiter

	helloed bool
	account domain.AccountID
	device  domain.DeviceID
	uid     domain.UniqueID
	// tokenExpires is the expiry of the token of the hello or last renew.
	tokenExpires time.Time

	leaseUntil atomic.Int64 // Unix nanoseconds; 0 before hello
	lastRead   atomic.Int64 // Unix nanoseconds
	pending    atomic.Int32 // frames queued, not yet written
	closed     atomic.Bool
	// routed is set once the hello's claim of the cluster route succeeded.
	routed atomic.Bool
}

func newSession(g *Gateway, conn *gws.Conn, now time.Time) *session {
	s := &session{g: g, conn: conn, connectedAt: now, limiter: rate.NewLimiter(rate.Limit(g.cfg.RatePerSecond), g.cfg.RateBurst)}
	s.lastRead.Store(now.UnixNano())
	return s
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
// outlives the token it was granted on: past the token's expiry a client
// renews with a fresh token or reconnects.
func (s *session) renewLease(now time.Time) time.Time {
	until := now.Add(s.g.cfg.Lease)
	if !s.tokenExpires.IsZero() && s.tokenExpires.Before(until) {
		until = s.tokenExpires
	}
	s.leaseUntil.Store(until.UnixNano())
	return until
}

// reply encodes f and queues it.
func (s *session) reply(f wire.ServerFrame) {
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

// write queues an encoded frame without blocking. A connection whose queue
// is full is closed as a slow consumer: it reconnects and syncs, so nothing
// is lost silently (I5).
func (s *session) write(frame []byte) {
	if s.closed.Load() {
		return
	}
	if int(s.pending.Add(1)) > s.g.cfg.MaxQueuedFrames {
		s.pending.Add(-1)
		s.closeWith(wire.CloseSlowConsumer, wire.ReasonSlowConsumer, true)
		return
	}
	s.conn.Async(func() {
		defer s.pending.Add(-1)
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.g.cfg.WriteTimeout))
		if err := s.conn.WriteMessage(gws.OpcodeText, frame); err != nil {
			s.closeWith(wire.CloseSlowConsumer, wire.ReasonSlowConsumer, true)
		}
	})
}

// closeWith closes the connection with a close code and reason. Unless
// immediate, frames already queued (an error reply, say) are written first.
func (s *session) closeWith(code uint16, reason string, immediate bool) {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	// Not the uid: the sweeper may close a connection whose hello is
	// writing it at this moment.
	s.g.log.Debug("closing connection", "code", code, "reason", reason)
	s.g.cfg.Observer.Closed(reason)
	do := func() {
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.conn.WriteClose(code, []byte(reason))
	}
	if immediate {
		go do()
		return
	}
	s.conn.Async(do)
}
