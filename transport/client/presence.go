package client

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/transport/wire"
)

// presenceBook is the presence of the accounts the connection watches,
// kept in the order frames arrive: a presence_state reply replaces it
// whole, a presence push updates one account. Applying both on the read
// goroutine, not from Pushes, keeps a push that was written before a
// reply from being applied after it.
type presenceBook struct {
	mu sync.Mutex
	m  map[string]wire.PresenceInfo
}

func (b *presenceBook) apply(f wire.ServerFrame, on func(wire.PresenceInfo)) {
	b.mu.Lock()
	var changed []wire.PresenceInfo
	switch {
	case f.Type == wire.TypePresenceState:
		b.m = make(map[string]wire.PresenceInfo, len(f.Presence))
		for _, p := range f.Presence {
			b.m[p.Account] = p
		}
		changed = f.Presence
	case f.Type == wire.TypePresencePush && f.ID == "":
		p := wire.PresenceInfo{Account: f.Account, Online: f.Online, LastSeen: f.LastSeen}
		if _, watched := b.m[p.Account]; watched {
			b.m[p.Account] = p
			changed = []wire.PresenceInfo{p}
		}
	}
	b.mu.Unlock()
	if on != nil {
		for _, p := range changed {
			on(p)
		}
	}
}

// Presence subscribes this connection to the online/offline changes of
// accounts, replacing any earlier subscription (none: unsubscribe), and
// returns their current state, in the order asked without duplicates. At
// most wire.MaxPresenceAccounts. Changes then arrive as "presence" pushes
// (on Pushes, and to Config.OnPresence); PresenceOf answers from them.
func (c *Client) Presence(ctx context.Context, accounts ...string) ([]wire.PresenceInfo, error) {
	if accounts == nil {
		accounts = []string{}
	}
	f, err := c.Do(ctx, wire.Request{Type: wire.TypePresence, Accounts: accounts})
	return f.Presence, err
}

// PresenceOf is the latest known presence of account, if this connection
// watches it.
func (c *Client) PresenceOf(account string) (wire.PresenceInfo, bool) {
	c.presence.mu.Lock()
	defer c.presence.mu.Unlock()
	p, ok := c.presence.m[account]
	return p, ok
}
