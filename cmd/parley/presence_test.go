package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
	"github.com/parley-chat/parley/transport/ws"
)

func TestPresenceEmbedded(t *testing.T) {
	srv := startServer(t, nil)
	presenceScenario(t, srv, srv)
}

// Presence crosses gateways: the watcher is on one, the watched devices
// on both.
func TestPresenceCluster(t *testing.T) {
	c := startCluster(t)
	presenceScenario(t, c.instance(gatewayOnly), c.instance(gatewayOnly))
}

// presenceOf are the presence pushes d got about account.
func presenceOf(d *device, account string) []wire.ServerFrame {
	var out []wire.ServerFrame
	for _, f := range d.received() {
		if f.Type == wire.TypePresencePush && f.Account == account {
			out = append(out, f)
		}
	}
	return out
}

// quietFor fails if d gets a presence push about account beyond the n it
// has, within a moment.
func quietFor(t *testing.T, d *device, account string, n int) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if got := presenceOf(d, account); len(got) != n {
		t.Fatalf("presence pushes about %s: %+v, want %d", account, got, n)
	}
}

// presenceScenario: a watcher on a sees alice turn online with her first
// device (on b) and offline with her last (on a), with lastSeen when she
// left; a connection that did not ask sees nothing; a second request
// replaces the subscription and an empty one ends it; bad input is
// refused.
func presenceScenario(t *testing.T, a, b *server) {
	ctx := ctxT(t)
	bystander := b.device("dave", "phone")
	watcher := a.device("carol", "phone")
	got, err := watcher.c.Presence(ctx, "alice", "bob", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (wire.PresenceInfo{Account: "alice"}) || got[1] != (wire.PresenceInfo{Account: "bob"}) {
		t.Fatalf("presence of accounts never seen: %+v, want alice and bob offline without lastSeen", got)
	}

	phone := b.dial("alice", "phone")
	waitFor(t, func() bool { return len(presenceOf(watcher, "alice")) == 1 })
	if f := presenceOf(watcher, "alice")[0]; !f.Online || f.LastSeen != 0 || f.ID != "" {
		t.Fatalf("alice's first device: %+v, want online", f)
	}
	laptop, err := a.tryDial("alice", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	phone.Close()
	quietFor(t, watcher, "alice", 1) // a second device, then the first leaves: still online
	if p, ok := watcher.c.PresenceOf("alice"); !ok || !p.Online {
		t.Errorf("the client's view of alice with her laptop on: %+v %v", p, ok)
	}
	left := time.Now().Add(-time.Millisecond)
	laptop.Close()
	waitFor(t, func() bool { return len(presenceOf(watcher, "alice")) == 2 })
	off := presenceOf(watcher, "alice")[1]
	if off.Online || off.LastSeen < left.UnixMilli() || off.LastSeen > time.Now().UnixMilli() {
		t.Fatalf("alice's last device leaves: %+v, want offline with lastSeen after %d", off, left.UnixMilli())
	}
	if p, _ := watcher.c.PresenceOf("alice"); p != (wire.PresenceInfo{Account: "alice", LastSeen: off.LastSeen}) {
		t.Errorf("the client's view of alice: %+v", p)
	}
	got, err = watcher.c.Presence(ctx, "bob", "alice")
	if err != nil || len(got) != 2 || got[1] != (wire.PresenceInfo{Account: "alice", LastSeen: off.LastSeen}) {
		t.Fatalf("asked again: %+v %v, want alice offline since %d", got, err, off.LastSeen)
	}

	// A second request replaces the subscription: alice is no longer
	// watched, bob is.
	if _, err := watcher.c.Presence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	a.dial("alice", "tablet")
	bobPhone := b.dial("bob", "phone")
	waitFor(t, func() bool { return len(presenceOf(watcher, "bob")) == 1 })
	quietFor(t, watcher, "alice", 2)
	// An empty list unsubscribes.
	if got, err := watcher.c.Presence(ctx); err != nil || len(got) != 0 {
		t.Fatalf("unsubscribe: %+v %v", got, err)
	}
	bobPhone.Close()
	quietFor(t, watcher, "bob", 1)
	for _, f := range bystander.received() {
		if f.Type == wire.TypePresencePush {
			t.Errorf("a connection that did not ask got %+v", f)
		}
	}

	tooMany := make([]string, wire.MaxPresenceAccounts+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("user", i)
	}
	rows := []struct {
		name     string
		accounts []string
		want     wire.Code
	}{
		{"list too long", tooMany, wire.CodeTooLarge},
		{"invalid account", []string{"bob", "not an id"}, wire.CodeInvalidArgument},
		{"empty account", []string{""}, wire.CodeInvalidArgument},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := watcher.c.Presence(ctxT(t), tt.accounts...); client.CodeOf(err) != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("before hello", func(t *testing.T) {
		raw, err := client.Connect(ctxT(t), client.Config{URL: a.url()})
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Presence(ctxT(t), "alice"); client.CodeOf(err) != wire.CodeHelloRequired {
			t.Errorf("got %v, want hello_required", err)
		}
	})
	// The full list is allowed, and the long request costs more of the
	// rate limit than a short one, but is served.
	if got, err := watcher.c.Presence(ctx, tooMany[:wire.MaxPresenceAccounts]...); err != nil || len(got) != wire.MaxPresenceAccounts {
		t.Fatalf("the longest list: %d entries, %v", len(got), err)
	}
}

// A gateway killed (not shut down) leaves its devices' routes behind: the
// other gateways reap them once its liveness lapses, and its accounts turn
// offline with lastSeen at its last beat, not at the reaping. A gateway
// shut down cleanly turns its accounts offline at once.
func TestPresenceGatewayCrash(t *testing.T) {
	c := startCluster(t)
	gw1, gw2, gw3 := c.instance(gatewayOnly), c.instance(gatewayOnly), c.instance(gatewayOnly)
	ctx := ctxT(t)
	watcher := gw2.device("carol", "phone")
	if _, err := watcher.c.Presence(ctx, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	gw1.dial("alice", "phone")
	gw3.dial("bob", "phone")
	waitFor(t, func() bool { return len(presenceOf(watcher, "alice")) == 1 && len(presenceOf(watcher, "bob")) == 1 })

	stopped := time.Now().Add(-time.Millisecond)
	gw3.stop()
	// At once: well before the liveness TTL, after which a reaping would
	// turn him offline too.
	for deadline := time.Now().Add(routes.AliveTTL / 3); len(presenceOf(watcher, "bob")) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("bob still online %v after his gateway shut down", time.Since(stopped))
		}
	}
	if f := presenceOf(watcher, "bob")[1]; f.Online || f.LastSeen < stopped.UnixMilli() {
		t.Errorf("bob after his gateway's shutdown: %+v, want offline since %d", f, stopped.UnixMilli())
	}

	killed := time.Now()
	gw1.n.Abort()
	gw1.n = nil
	// A beat already under way when the kill began may land while Abort
	// runs: the last beat is before Abort returned, not before it began.
	aborted := time.Now()
	// The reaping comes within the liveness TTL plus one beat (a reap
	// runs every beat) of the last beat; this wait bounds the test, it
	// does not time the server.
	deadline := killed.Add(routes.AliveTTL + routes.AliveTTL/3 + 10*time.Second)
	for len(presenceOf(watcher, "alice")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("alice still online %v after her gateway was killed", time.Since(killed))
		}
		time.Sleep(50 * time.Millisecond)
	}
	off := presenceOf(watcher, "alice")[1]
	t.Logf("alice offline %v after the kill, lastSeen %v before it", time.Since(killed).Round(time.Millisecond), killed.Sub(time.UnixMilli(off.LastSeen)))
	// Its last beat was at most a beat interval before the kill (a beat
	// may be late by a scheduling delay; one more interval covers it).
	if off.Online || off.LastSeen > aborted.UnixMilli() || off.LastSeen < killed.Add(-2*routes.AliveTTL/3).UnixMilli() {
		t.Errorf("alice after the kill: %+v, want offline with lastSeen the gateway's last beat, before %d", off, aborted.UnixMilli())
	}

	// The HTTP API tells the same.
	p := onlineOf(t, gw2, "alice")
	if p.Online == nil || *p.Online || p.LastSeen != off.LastSeen || len(p.Devices) != 0 {
		t.Errorf("GET online after the kill: %+v", p)
	}
}

type onlineReply struct {
	Devices  []string `json:"devices"`
	Online   *bool    `json:"online"`
	LastSeen int64    `json:"lastSeen"`
}

func onlineOf(t *testing.T, s *server, account string) onlineReply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.n.Addr()+"/api/v1/accounts/"+account+"/online", nil)
	req.Header.Set("Authorization", "Bearer "+s.token(account, "web", time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out onlineReply
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET online: %d", resp.StatusCode)
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

// An account whose devices come and go as fast as they can is pushed to
// its watchers about once a second, not once per change, and the last
// push is where it ended: offline, since the last device left.
func TestPresenceChurnIsPushedOnceASecond(t *testing.T) {
	srv := startServer(t, nil)
	watcher := srv.device("carol", "phone")
	if _, err := watcher.c.Presence(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	const flaps = 40
	start := time.Now()
	var lastClose time.Time
	for i := range flaps {
		c, err := srv.tryDial("alice", fmt.Sprint("device", i))
		if err != nil {
			t.Fatal(err)
		}
		lastClose = time.Now()
		c.Close()
	}
	elapsed := time.Since(start)
	time.Sleep(2*ws.PresenceInterval + 500*time.Millisecond)
	got := presenceOf(watcher, "alice")
	if len(got) == 0 || got[len(got)-1].Online || got[len(got)-1].LastSeen < lastClose.UnixMilli() {
		t.Fatalf("pushes %+v, want the last offline since the last device left (%d)", got, lastClose.UnixMilli())
	}
	// At most two pushes an interval: the first change at once, the
	// latest at the interval's end.
	if limit := 2 * (int(elapsed/ws.PresenceInterval) + 2); len(got) > limit {
		t.Fatalf("%d devices came and went in %v: %d pushes, want at most %d", flaps, elapsed, len(got), limit)
	}
	t.Logf("%d devices came and went in %v: %d pushes", flaps, elapsed, len(got))
}
