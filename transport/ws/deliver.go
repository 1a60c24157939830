package ws

import (
	"encoding/json"

	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/wire"
)

// Deliver implements push.Deliverer: the frame is encoded once and queued on
// every local connection of every recipient, except the sending device.
func (g *Gateway) Deliver(p push.Push) {
	msg := wire.FromMessage(p.Message)
	frame, err := json.Marshal(wire.ServerFrame{Type: wire.TypePush, PrevMsgID: int64(p.Prev), Message: &msg})
	if err != nil {
		g.log.Error("cannot encode a push", "err", err)
		return
	}
	sender := p.Message.Sender
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, a := range p.Recipients {
		for s := range g.byAccount[a] {
			if s.account == sender.Account && s.device == sender.Device {
				continue
			}
			s.write(frame)
		}
	}
}
