package ws

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/wire"
)

// TypingInterval is the least time between two typing signals of one
// account in one conversation that are passed on (per gateway).
const TypingInterval = time.Second

// maxTypingKeys bounds the throttle's memory: past it, it forgets the
// keys whose interval has passed (which a signal would pass anyway), and
// starts over only if they all typed within the interval (which lets at
// most one extra signal through per key).
const maxTypingKeys = 1 << 16

type typingKey struct {
	a domain.AccountID
	c domain.ConversationID
}

// typingThrottle remembers when each account last typed in each
// conversation.
type typingThrottle struct {
	mu   sync.Mutex
	last map[typingKey]time.Time
}

// allow reports whether a signal of k at now may pass, and how long to
// wait if not.
func (t *typingThrottle) allow(k typingKey, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.last[k]; ok && now.Sub(at) < TypingInterval {
		return false, TypingInterval - now.Sub(at)
	}
	if t.last == nil {
		t.last = map[typingKey]time.Time{}
	}
	if len(t.last) >= maxTypingKeys {
		fresh := map[typingKey]time.Time{}
		for key, at := range t.last {
			if now.Sub(at) < TypingInterval {
				fresh[key] = at
			}
		}
		if len(fresh) >= maxTypingKeys/2 {
			fresh = map[typingKey]time.Time{} // a flood of keys: start over
		}
		t.last = fresh
	}
	t.last[k] = now
	return true, 0
}

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
	if ok, wait := h.g.typing.allow(typingKey{s.account, conv}, now); !ok {
		s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypeError, Code: string(wire.CodeRateLimited),
			Error: "at most one typing signal per second per conversation", RetryAfterMs: wire.RetryAfter(wait)})
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
