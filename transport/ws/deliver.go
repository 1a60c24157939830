package ws

import (
	"math"
	"time"

	"github.com/parley-chat/parley/domain"

	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/wire"
)

// Deliver implements push.Deliverer: the frame is encoded once and queued on
// every local connection of every recipient, the sending device too: its
// cursor moves on with its own messages like with everyone else's.
func (g *Gateway) Deliver(p push.Push) error {
	frame := PushFrame(p)
	// A message goes to its sending device too (its cursor moves on with
	// it); a change, a receipt or a typing signal skips its own device
	// (SkipsOrigin).
	skip, skipping := p.Origin(), p.SkipsOrigin()
	skipped := func(s *session) bool {
		return skipping && s.account == skip.Account && s.device == skip.Device
	}
	n := 0
	g.mu.RLock()
	for _, a := range p.Recipients { // how many connections share the frame
		for _, s := range g.byAccount[a] {
			if !skipped(s) {
				n++
			}
		}
	}
	for _, a := range p.Recipients {
		for _, s := range g.byAccount[a] {
			if !skipped(s) {
				s.writeShared(frame, int32(min(n, math.MaxInt32)))
			}
		}
	}
	g.mu.RUnlock()
	g.cfg.Observer.Pushed(n, p.At())
	return nil
}

// PushFrame encodes a push: a message, a change to one, a read receipt or
// a typing signal.
func PushFrame(p push.Push) []byte {
	if c := p.Change; c != nil {
		return wire.AppendChange(nil, c)
	}
	if r := p.Receipt; r != nil {
		return wire.AppendReadPush(nil, r.Conversation.String(), string(r.Reader.Account), int64(r.MsgID))
	}
	if t := p.Typing; t != nil {
		return wire.AppendTypingPush(nil, t.Conversation.String(), string(t.From.Account))
	}
	msg := wire.FromMessage(p.Message)
	return wire.AppendPush(nil, &msg, int64(p.Prev))
}

// DeliverUIDs writes an encoded push to the local connections of uids; a
// device no longer here is skipped (it syncs when it reconnects).
func (g *Gateway) DeliverUIDs(uids []domain.UniqueID, frame []byte, accepted time.Time) {
	n := 0
	g.mu.RLock()
	for _, u := range uids { // how many connections share the frame
		if g.byUID[u] != nil {
			n++
		}
	}
	for _, u := range uids {
		if s := g.byUID[u]; s != nil {
			s.writeShared(frame, int32(min(n, math.MaxInt32)))
		}
	}
	g.mu.RUnlock()
	g.cfg.Observer.Pushed(n, accepted)
}

// Kick closes the local connection of uid, for another instance: with
// reason replaced (that instance took its route under the replace policy)
// or slow_consumer (a push for it was lost between instances; it resyncs).
func (g *Gateway) Kick(uid domain.UniqueID, reason string) {
	g.mu.RLock()
	s := g.byUID[uid]
	g.mu.RUnlock()
	if s == nil {
		return
	}
	if reason == wire.ReasonSlowConsumer {
		s.closeWith(wire.CloseSlowConsumer, wire.ReasonSlowConsumer, true)
		return
	}
	s.closeWith(wire.CloseReplaced, wire.ReasonReplaced, false)
}

// Logout implements logout.Closer: it closes the local connections of
// account (of one device if device is set) with reason logged_out; their
// routes are released as they close.
func (g *Gateway) Logout(account domain.AccountID, device domain.DeviceID, reason string) int {
	g.mu.RLock()
	var victims []*session
	for _, s := range g.byAccount[account] {
		if device == "" || s.device == device {
			victims = append(victims, s)
		}
	}
	g.mu.RUnlock()
	for _, s := range victims {
		g.log.Info("logging out", "uid", s.uid, "reason", reason)
		s.closeWith(wire.CloseLoggedOut, wire.ReasonLoggedOut, false)
	}
	return len(victims)
}
