package ws

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
)

// PresenceSource reads accounts' presence: the route table, which also
// tells the gateway of every change (Gateway.PresenceChanged).
type PresenceSource interface {
	Presence(ctx context.Context, accounts []domain.AccountID) ([]domain.Presence, error)
}

// PresenceInterval paces the pushes about one account that a gateway
// writes. The gateway's intervals follow one another; the first change
// of an account in an interval goes out at once, and the later ones wait
// for the interval's end, when only the latest goes out. An account
// whose devices come and go as fast as they can so costs its watchers at
// most two pushes an interval (one at its start, one at its end), not one
// per change.
const PresenceInterval = time.Second

// presenceHub is who watches whom on this gateway: a change of an
// account is encoded once and queued on the connections that asked for
// it, and on no other.
type presenceHub struct {
	mu       sync.Mutex
	watchers map[domain.AccountID]map[*session]struct{}
	total    int
	// seq counts the changes taken in. A subscription remembers it
	// (sessionPresence.from): a change that waited is not pushed to a
	// connection whose reply was read after the hub knew of it, since
	// that reply is at least as new.
	seq uint64
	// pushed are the accounts pushed in the current interval, and
	// waiting the latest change of each since, pushed as the interval
	// ends (flush); armed is set while a flush is due.
	pushed  map[domain.AccountID]struct{}
	waiting map[domain.AccountID]waitingChange
	armed   bool
	// peak is the most accounts watchers held since it was last made
	// anew: a Go map keeps the room of its largest size, so the hub makes
	// it anew once it holds a small part of that (shrinkLocked).
	peak int
	// resyncing is set while PresenceResync reads every watched account:
	// changes meanwhile wait in resyncHeld (the latest per account) and
	// are pushed after what it read, for the reason of sessionPresence's
	// holding.
	resyncing  bool
	resyncHeld map[domain.AccountID]domain.Presence
}

// waitingChange is an account's latest change within an interval in
// which it was already pushed, and the hub's seq when it came.
type waitingChange struct {
	p   domain.Presence
	seq uint64
}

// sessionPresence is a connection's part of the hub, guarded by the hub's
// mu.
type sessionPresence struct {
	watching []domain.AccountID
	// from is the hub's seq when the subscription was made.
	from uint64
	// holding is set while a presence request reads the current state:
	// changes meanwhile wait in held (the latest per account) and are
	// written after the reply, so that the client never applies a reply
	// older than a push it has already seen.
	holding bool
	held    map[domain.AccountID][]byte
}

var errPresenceFull = fmt.Errorf("%w: this gateway holds as many presence subscriptions as it may", api.ErrUnavailable)

// replace makes accounts s's subscriptions, holding their changes until
// release.
func (h *presenceHub) replace(s *session, accounts []domain.AccountID, limit int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	sp := &s.presence
	if s.closed.Load() {
		// Closing: remove has dropped it, or will; adding it now would
		// outlive the connection.
		return nil
	}
	if len(accounts) > len(sp.watching) && h.total-len(sp.watching)+len(accounts) > limit {
		return errPresenceFull
	}
	h.dropLocked(s)
	if h.watchers == nil {
		h.watchers = map[domain.AccountID]map[*session]struct{}{}
	}
	for _, a := range accounts {
		set := h.watchers[a]
		if set == nil {
			set = map[*session]struct{}{}
			h.watchers[a] = set
		}
		set[s] = struct{}{}
	}
	sp.watching, sp.from = accounts, h.seq
	h.total += len(accounts)
	sp.holding = len(accounts) > 0
	return nil
}

// release writes the changes held for s during its request, after its
// reply — but not one that a newer change waiting for the interval's end
// will follow (flush pushes that one to s): the reply may already show
// the newer state, and the held one would take the client back.
func (h *presenceHub) release(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sp := &s.presence
	for _, a := range sp.watching {
		if f, ok := sp.held[a]; ok {
			if w, newer := h.waiting[a]; newer && w.seq > sp.from {
				continue
			}
			s.write(f)
		}
	}
	sp.holding, sp.held = false, nil
}

// drop forgets s's subscriptions, when it closes.
func (h *presenceHub) drop(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(s)
}

func (h *presenceHub) dropLocked(s *session) {
	sp := &s.presence
	for _, a := range sp.watching {
		if set := h.watchers[a]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(h.watchers, a)
			}
		}
	}
	h.total -= len(sp.watching)
	sp.watching, sp.holding, sp.held = nil, false, nil
	h.shrinkLocked()
}

// shrinkLocked makes watchers anew once it holds under a quarter of the
// accounts it once held (and that peak was large): after a wave of
// subscriptions leaves, their room goes with them.
func (h *presenceHub) shrinkLocked() {
	n := len(h.watchers)
	h.peak = max(h.peak, n)
	if h.peak < 4096 || n >= h.peak/4 {
		return
	}
	fresh := make(map[domain.AccountID]map[*session]struct{}, n)
	for a, set := range h.watchers {
		fresh[a] = set
	}
	h.watchers, h.peak = fresh, n
}

// Watching is how many presence subscriptions the gateway holds.
func (g *Gateway) Watching() int {
	g.presence.mu.Lock()
	defer g.presence.mu.Unlock()
	return g.presence.total
}

// PresenceChanged pushes a change of p.Account's presence to the
// connections here that subscribed to it. The route table calls it for
// every change, made by any gateway; its cost is one encoding and one
// queued frame per subscribed connection, at most about once per
// PresenceInterval and account (see presenceHub.pushed).
func (g *Gateway) PresenceChanged(p domain.Presence) {
	h := &g.presence
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.watchers[p.Account]) == 0 {
		return
	}
	h.seq++
	if h.resyncing {
		h.resyncHeld[p.Account] = p
		return
	}
	if _, ok := h.pushed[p.Account]; ok {
		if h.waiting == nil {
			h.waiting = map[domain.AccountID]waitingChange{}
		}
		h.waiting[p.Account] = waitingChange{p, h.seq}
		return
	}
	h.deliverLocked(p, 0)
}

// flush ends an interval: it pushes each change that waited, to the
// connections that subscribed before it came, and starts the next
// interval with those accounts.
func (h *presenceHub) flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	waiting := h.waiting
	h.pushed, h.waiting, h.armed = nil, nil, false
	for _, w := range waiting {
		h.deliverLocked(w.p, w.seq)
	}
}

// deliverLocked pushes p to its watchers (only those that subscribed
// before the hub's seq was seq, unless seq is 0), and marks its account
// pushed in this interval.
func (h *presenceHub) deliverLocked(p domain.Presence, seq uint64) {
	set := h.watchers[p.Account]
	if len(set) == 0 {
		return
	}
	if h.pushed == nil {
		h.pushed = map[domain.AccountID]struct{}{}
	}
	h.pushed[p.Account] = struct{}{}
	if !h.armed {
		h.armed = true
		time.AfterFunc(PresenceInterval, h.flush)
	}
	frame := wire.AppendPresencePush(nil, string(p.Account), p.Online, lastSeenMs(p))
	for s := range set {
		if seq != 0 && s.presence.from >= seq {
			continue
		}
		if s.presence.holding {
			if s.presence.held == nil {
				s.presence.held = map[domain.AccountID][]byte{}
			}
			s.presence.held[p.Account] = frame
			continue
		}
		s.write(frame)
	}
}

// PresenceResync reads the presence of every account watched here again
// and pushes it to the watchers, for when the route table says changes
// may have been missed (see routes.Table.WatchPresence). A watcher may
// get a state it already has.
func (g *Gateway) PresenceResync(ctx context.Context) {
	h := &g.presence
	h.mu.Lock()
	if h.resyncing || g.cfg.Presence == nil {
		h.mu.Unlock()
		return
	}
	h.resyncing, h.resyncHeld = true, map[domain.AccountID]domain.Presence{}
	accounts := make([]domain.AccountID, 0, len(h.watchers))
	for a := range h.watchers {
		accounts = append(accounts, a)
	}
	h.mu.Unlock()
	var states []domain.Presence
	for len(accounts) > 0 {
		n := min(len(accounts), wire.MaxPresenceAccounts)
		got, err := g.cfg.Presence.Presence(ctx, accounts[:n])
		if err != nil {
			g.log.Warn("cannot read presence again; watchers keep what they have", "err", err)
			break
		}
		states = append(states, got...)
		accounts = accounts[n:]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// What was read, and what came while it read, is newer than any
	// change that waited from before: those are dropped.
	for _, p := range states {
		delete(h.waiting, p.Account)
		if _, newer := h.resyncHeld[p.Account]; !newer {
			h.deliverLocked(p, 0)
		}
	}
	for _, p := range h.resyncHeld {
		delete(h.waiting, p.Account)
		h.deliverLocked(p, 0)
	}
	h.resyncing, h.resyncHeld = false, nil
}

func lastSeenMs(p domain.Presence) int64 {
	if p.Online || p.LastSeen.IsZero() {
		return 0
	}
	return p.LastSeen.UnixMilli()
}

// presenceAccounts checks a presence request's list: at most
// MaxPresenceAccounts valid account ids; duplicates are left out.
func presenceAccounts(list []string) ([]domain.AccountID, error) {
	if len(list) > wire.MaxPresenceAccounts {
		return nil, &domain.LimitError{Field: "accounts", Limit: wire.MaxPresenceAccounts, Got: len(list)}
	}
	out := make([]domain.AccountID, 0, len(list))
	seen := make(map[domain.AccountID]bool, len(list))
	for _, s := range list {
		a, err := domain.ParseAccountID(s)
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// presence answers a presence request: it replaces the connection's
// subscriptions with the accounts asked (none: unsubscribed) and answers
// with their current state. A request refused for its input or its rate
// leaves the earlier subscriptions; one that fails after (unavailable)
// leaves none.
func (h *handler) presence(ctx context.Context, s *session, req wire.Request, now time.Time) {
	accounts, err := presenceAccounts(req.Accounts)
	if err != nil {
		h.failWith(s, req.ID, err)
		return
	}
	// The frame took one token; a long list takes more, one per
	// PresenceAccountsPerToken accounts.
	if extra := (len(accounts)+wire.PresenceAccountsPerToken-1)/wire.PresenceAccountsPerToken - 1; extra > 0 && !s.limiter.AllowN(now, extra) {
		s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypeError, Code: string(wire.CodeRateLimited),
			Error: "too many presence lookups", RetryAfterMs: retryAfter(h.g.cfg.RatePerSecond / float64(extra+1))})
		return
	}
	src := h.g.cfg.Presence
	if src == nil {
		h.failWith(s, req.ID, fmt.Errorf("%w: this gateway has no presence source", api.ErrUnavailable))
		return
	}
	hub := &h.g.presence
	if err := hub.replace(s, accounts, h.g.cfg.MaxPresenceWatches); err != nil {
		hub.drop(s)
		h.failWith(s, req.ID, err)
		return
	}
	states, err := src.Presence(ctx, accounts)
	if err != nil {
		hub.drop(s)
		h.failWith(s, req.ID, fmt.Errorf("%w: %v", api.ErrUnavailable, err))
		return
	}
	out := make([]wire.PresenceInfo, len(states))
	for i, p := range states {
		out[i] = wire.PresenceInfo{Account: string(p.Account), Online: p.Online, LastSeen: lastSeenMs(p)}
	}
	s.reply(wire.ServerFrame{ID: req.ID, Type: wire.TypePresenceState, Presence: out})
	hub.release(s)
}
