package ws

import (
	"context"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/wire"
)

// SetFanout makes d deliver the gateway's own signals (typing): in a
// cluster the router, which reaches devices on other instances. Without
// it the gateway delivers to its own connections.
func (g *Gateway) SetFanout(d push.Deliverer) { g.fanout = d }

func (h *handler) typing(ctx context.Context, s *session, req wire.Request, now time.Time) {
	conv, recipients, err := h.g.svc.Typing(ctx, s.account, req.Conversation)
	if err != nil {
		h.failWith(s, req.ID, err)
		return
	}
	var out push.Deliverer = h.g
	if h.g.fanout != nil {
		out = h.g.fanout
	}
	if len(recipients) > 0 {
		p := push.Push{Typing: &push.Typing{Conversation: conv, From: domain.Sender{Account: s.account, Device: s.device}, At: now}, Recipients: recipients}
		if err := out.Deliver(p); err != nil {
			h.g.log.Warn("typing not delivered", "uid", s.uid, "err", err)
		}
	}
	s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypeTypingSent})
}
