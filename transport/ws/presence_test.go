package ws_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
	"github.com/parley-chat/parley/transport/ws"
)

// midChange is a presence source that, while it reads, sees each account
// turn online (a change published during the read) and answers with the
// state from before it.
type midChange struct{ gw *ws.Gateway }

func (m *midChange) Presence(_ context.Context, accounts []domain.AccountID) ([]domain.Presence, error) {
	out := make([]domain.Presence, len(accounts))
	for i, a := range accounts {
		m.gw.PresenceChanged(domain.Presence{Account: a, Online: true})
		out[i] = domain.Presence{Account: a, LastSeen: time.UnixMilli(1000)}
	}
	return out, nil
}

// A change that arrives while a presence request reads the state is
// written after the reply, never before it: the client ends with the
// newer state.
func TestPresenceChangeDuringRequestFollowsReply(t *testing.T) {
	src := &midChange{}
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Presence = src })
	src.gw = g.gw
	var mu sync.Mutex
	var seen []wire.PresenceInfo
	c := g.dial("carol", "phone", func(cfg *client.Config) {
		cfg.OnPresence = func(p wire.PresenceInfo) { mu.Lock(); seen = append(seen, p); mu.Unlock() }
	})
	got, err := c.Presence(ctxT(t), "alice")
	if err != nil || len(got) != 1 || got[0] != (wire.PresenceInfo{Account: "alice", LastSeen: 1000}) {
		t.Fatalf("reply %+v %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, _ := c.PresenceOf("alice"); p.Online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change held during the request never came")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0].Online || !seen[1].Online {
		t.Errorf("in wire order: %+v, want the reply (offline) then the push (online)", seen)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type stillSource struct{}

func (stillSource) Presence(_ context.Context, accounts []domain.AccountID) ([]domain.Presence, error) {
	out := make([]domain.Presence, len(accounts))
	for i, a := range accounts {
		out[i] = domain.Presence{Account: a}
	}
	return out, nil
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("user", i)
	}
	return out
}

// The gateway's subscriptions are bounded all together; a connection's
// go when it closes, and a replaced list counts once.
func TestPresenceGatewayBound(t *testing.T) {
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Presence = stillSource{}; c.MaxPresenceWatches = 3 })
	ctx := ctxT(t)
	a, b := g.dial("alice", "phone"), g.dial("bob", "phone")
	if _, err := a.Presence(ctx, "x", "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Presence(ctx, "x", "z"); err != nil {
		t.Fatalf("a replaced list of the same size: %v", err)
	}
	if _, err := b.Presence(ctx, "x", "y"); client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("past the gateway's bound: %v, want unavailable", err)
	}
	if _, err := b.Presence(ctx, "x"); err != nil {
		t.Fatalf("within it: %v", err)
	}
	if n := g.gw.Watching(); n != 3 {
		t.Errorf("watching %d, want 3", n)
	}
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for g.gw.Watching() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("watching %d after a connection closed, want 1", g.gw.Watching())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A long list takes more of the rate limit than a short one; a gateway
// without a presence source answers unavailable.
func TestPresenceRateCostAndNoSource(t *testing.T) {
	g := newGateway(t, &fakeService{}, func(c *ws.Config) {
		c.Presence = stillSource{}
		c.RatePerSecond, c.RateBurst = 0.001, 6 // hello takes one; five are left
	})
	c := g.dial("alice", "phone")
	ctx := ctxT(t)
	_, err := c.Presence(ctx, names(wire.MaxPresenceAccounts)...)
	if client.CodeOf(err) != wire.CodeRateLimited {
		t.Fatalf("256 accounts with 5 tokens left: %v, want rate_limited", err)
	}
	if _, err := c.Presence(ctx, names(wire.PresenceAccountsPerToken)...); err != nil {
		t.Fatalf("32 accounts take one token: %v", err)
	}

	bare := newGateway(t, &fakeService{}, nil)
	if _, err := bare.dial("bob", "phone").Presence(ctx, "alice"); client.CodeOf(err) != wire.CodeUnavailable {
		t.Errorf("without a presence source: %v, want unavailable", err)
	}
}

// A resync pushes every watched account's state again, and a change that
// arrives while it reads goes out after what it read.
func TestPresenceResync(t *testing.T) {
	src := &switchable{}
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Presence = src })
	src.mid.gw = g.gw
	var mu sync.Mutex
	var seen []wire.PresenceInfo
	c := g.dial("carol", "phone", func(cfg *client.Config) {
		cfg.OnPresence = func(p wire.PresenceInfo) { mu.Lock(); seen = append(seen, p); mu.Unlock() }
	})
	if _, err := c.Presence(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	waitSeen := func(n int) []wire.PresenceInfo {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			got := append([]wire.PresenceInfo(nil), seen...)
			mu.Unlock()
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%+v, want %d", got, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	g.gw.PresenceResync(ctxT(t))
	if got := waitSeen(2); got[1] != (wire.PresenceInfo{Account: "alice"}) {
		t.Fatalf("after a resync %+v, want alice's state pushed again", got)
	}
	// A change that comes while the resync reads is newer than what it
	// read: it is pushed, and the older read state is not.
	src.set(true)
	g.gw.PresenceResync(ctxT(t))
	waitSeen(3)
	time.Sleep(200 * time.Millisecond)
	if got := waitSeen(3); len(got) != 3 || !got[2].Online {
		t.Fatalf("after a resync with a change during it: %+v, want the change (online) last", got)
	}
}

// switchable answers like stillSource until set, then like midChange.
type switchable struct {
	mu  sync.Mutex
	on  bool
	mid midChange
}

func (s *switchable) set(on bool) { s.mu.Lock(); s.on = on; s.mu.Unlock() }

func (s *switchable) Presence(ctx context.Context, accounts []domain.AccountID) ([]domain.Presence, error) {
	s.mu.Lock()
	on := s.mid.gw != nil && s.on
	s.mu.Unlock()
	if on {
		return s.mid.Presence(ctx, accounts)
	}
	return stillSource{}.Presence(ctx, accounts)
}

// An account whose presence flaps as fast as it can costs each watcher
// about one push a second, not one per change: the first change goes out
// at once, the rest wait for the interval's end, and only the latest of
// them is pushed then. A connection that subscribes while a change waits
// has that change's state in its reply and is not pushed it again.
func TestPresenceFlapsArePushedOnceAnInterval(t *testing.T) {
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Presence = stillSource{} })
	var mu sync.Mutex
	var seen, late []wire.PresenceInfo
	watch := func(into *[]wire.PresenceInfo) func(*client.Config) {
		return func(cfg *client.Config) {
			cfg.OnPresence = func(p wire.PresenceInfo) { mu.Lock(); *into = append(*into, p); mu.Unlock() }
		}
	}
	c := g.dial("carol", "phone", watch(&seen))
	if _, err := c.Presence(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	const flaps = 200
	for i := range flaps {
		online := i%2 == 0
		p := domain.Presence{Account: "alice", Online: online}
		if !online {
			p.LastSeen = time.UnixMilli(int64(1000 + i))
		}
		g.gw.PresenceChanged(p)
	}
	// The reply of a request made while the last change waits replaces
	// it (stillSource answers offline without lastSeen: reply only).
	d := g.dial("dave", "phone", watch(&late))
	if _, err := d.Presence(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ws.PresenceInterval + ws.PresenceInterval/2)
	mu.Lock()
	got := append([]wire.PresenceInfo(nil), seen...)
	mu.Unlock()
	want := []wire.PresenceInfo{{Account: "alice"}, {Account: "alice", Online: true}, {Account: "alice", LastSeen: 1000 + flaps - 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("after %d changes within an interval: %+v, want the reply, the first change, then the latest", flaps, got)
	}
	time.Sleep(ws.PresenceInterval)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(want) {
		t.Errorf("pushes after the interval's end: %+v", seen[len(want):])
	}
	if len(late) != 1 {
		t.Errorf("a connection that subscribed while the change waited: %+v, want its reply only", late)
	}
}

// flapDuringRead is a presence source that, while it reads, sees each
// account turn online and offline again, and answers the latest: offline.
type flapDuringRead struct{ gw *ws.Gateway }

func (f *flapDuringRead) Presence(_ context.Context, accounts []domain.AccountID) ([]domain.Presence, error) {
	out := make([]domain.Presence, len(accounts))
	for i, a := range accounts {
		f.gw.PresenceChanged(domain.Presence{Account: a, Online: true})
		f.gw.PresenceChanged(domain.Presence{Account: a, LastSeen: time.UnixMilli(2000)})
		out[i] = domain.Presence{Account: a, LastSeen: time.UnixMilli(2000)}
	}
	return out, nil
}

// Two changes during a request's read: the first is held for after the
// reply, the second waits for the interval's end. The held one is older
// than the reply, so it is not written: the client ends, and stays, with
// the latest state, never going back to the older one in between.
func TestPresenceHeldChangeOlderThanTheReplyIsNotWritten(t *testing.T) {
	src := &flapDuringRead{}
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Presence = src })
	src.gw = g.gw
	var mu sync.Mutex
	var seen []wire.PresenceInfo
	c := g.dial("carol", "phone", func(cfg *client.Config) {
		cfg.OnPresence = func(p wire.PresenceInfo) { mu.Lock(); seen = append(seen, p); mu.Unlock() }
	})
	if _, err := c.Presence(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ws.PresenceInterval + ws.PresenceInterval/2)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range seen {
		if p.Online {
			t.Fatalf("the client went back to the older state: %+v", seen)
		}
	}
	if last := seen[len(seen)-1]; last.LastSeen != 2000 {
		t.Errorf("the client ends with %+v, want offline since 2000", last)
	}
}
