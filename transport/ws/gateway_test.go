package ws_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/client"
	"github.com/parley-chat/parley/transport/wire"
	"github.com/parley-chat/parley/transport/ws"
)

// fakeService answers sends with send, and everything else as empty.
type fakeService struct {
	send func(ctx context.Context, r api.SendRequest) (api.Ack, error)
}

func (f *fakeService) Send(ctx context.Context, r api.SendRequest) (api.Ack, error) {
	if f.send != nil {
		return f.send(ctx, r)
	}
	return api.Ack{MsgID: 1 << 48, Conversation: domain.DirectConversation(r.From.Account, domain.AccountID(r.To.Account)), ServerTime: time.Now()}, nil
}
func (f *fakeService) Sync(context.Context, api.Actor, string, time.Time, domain.MsgID, int, bool) (api.SyncResult, error) {
	return api.SyncResult{Source: api.SourceStore, NextTime: time.Now()}, nil
}
func (f *fakeService) Conversations(context.Context, api.Actor, api.ConversationsQuery) ([]api.Conversation, bool, error) {
	return nil, false, nil
}
func (f *fakeService) CreateGroup(context.Context, api.Actor, string, []string) (*domain.Group, error) {
	return nil, domain.ErrForbidden
}
func (f *fakeService) AddMembers(context.Context, api.Actor, string, []string) (*domain.Group, error) {
	return nil, domain.ErrForbidden
}
func (f *fakeService) RemoveMembers(context.Context, api.Actor, string, []string) (*domain.Group, error) {
	return nil, domain.ErrForbidden
}
func (f *fakeService) GroupsPage(context.Context, api.Actor, string) ([]*domain.Group, bool, error) {
	return nil, false, nil
}
func (f *fakeService) Read(context.Context, api.ReadRequest) (conversations.ReadState, error) {
	return conversations.ReadState{}, nil
}
func (f *fakeService) Typing(context.Context, domain.AccountID, string) (domain.ConversationID, []domain.AccountID, error) {
	return domain.ConversationID{}, nil, nil
}
func (f *fakeService) Readers(context.Context, api.Actor, string, domain.MsgID) (api.Readers, error) {
	return api.Readers{}, nil
}
func (f *fakeService) Edit(context.Context, api.EditRequest) (api.Ack, error) { return api.Ack{}, nil }
func (f *fakeService) Mute(context.Context, api.Actor, string, int64) (api.MuteState, error) {
	return api.MuteState{}, nil
}
func (f *fakeService) Unmute(context.Context, api.Actor, string) (api.MuteState, error) {
	return api.MuteState{}, nil
}
func (f *fakeService) Delete(context.Context, domain.Sender, string, domain.MsgID, api.Via) (api.Ack, error) {
	return api.Ack{}, nil
}

// fakeRoutes is a route table of one instance.
type fakeRoutes struct {
	mu     sync.Mutex
	routes map[domain.UniqueID]string
}

func (r *fakeRoutes) Claim(_ context.Context, uid domain.UniqueID, instance string, _ bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.routes[uid]
	r.routes[uid] = instance
	return prev, nil
}
func (r *fakeRoutes) Release(_ context.Context, uid domain.UniqueID, instance string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.routes[uid] == instance {
		delete(r.routes, uid)
	}
	return nil
}
func (r *fakeRoutes) Refresh(context.Context, domain.UniqueID, string) error { return nil }

var secret = []byte("ws-test-secret-0123456789abcdefghij")

type gateway struct {
	t      *testing.T
	gw     *ws.Gateway
	srv    *httptest.Server
	tokens *auth.Tokens
}

func newGateway(t *testing.T, svc ws.Service, mod func(*ws.Config)) *gateway {
	t.Helper()
	tokens, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ws.Config{Routes: &fakeRoutes{routes: map[domain.UniqueID]string{}}, Instance: "test:1",
		SweepInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	gw, err := ws.New(cfg, svc, tokens)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
		srv.Close()
	})
	return &gateway{t: t, gw: gw, srv: srv, tokens: tokens}
}

func (g *gateway) url() string { return "ws" + strings.TrimPrefix(g.srv.URL, "http") }

func (g *gateway) dial(account, device string, opts ...func(*client.Config)) *client.Client {
	g.t.Helper()
	tok, err := g.tokens.Mint(domain.AccountID(account), domain.DeviceID(device), time.Hour)
	if err != nil {
		g.t.Fatal(err)
	}
	cfg := client.Config{URL: g.url(), Token: tok, RequestTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		g.t.Fatalf("dial: %v", err)
	}
	g.t.Cleanup(c.Close)
	return c
}

func closedWith(t *testing.T, c *client.Client, within time.Duration) uint16 {
	t.Helper()
	select {
	case <-c.Done():
		code, _ := c.CloseReason()
		return code
	case <-time.After(within):
		t.Fatalf("still open after %v", within)
		return 0
	}
}

func noPings(c *client.Config) { c.PingInterval = -1; c.DisableAutoRenew = true }

// Deadlines: a connection without hello, one whose lease ends, and one
// that goes silent are each closed with their code.
func TestDeadlines(t *testing.T) {
	g := newGateway(t, &fakeService{}, func(c *ws.Config) {
		c.HelloTimeout = 200 * time.Millisecond
		c.Lease = time.Second
	})
	t.Run("hello timeout", func(t *testing.T) {
		c, err := client.Connect(t.Context(), client.Config{URL: g.url(), PingInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code := closedWith(t, c, 3*time.Second); code != wire.CloseHelloTimeout {
			t.Fatalf("closed with %d, want %d", code, wire.CloseHelloTimeout)
		}
	})
	t.Run("lease", func(t *testing.T) {
		c := g.dial("alice", "lease", func(c *client.Config) { c.DisableAutoRenew = true })
		if code := closedWith(t, c, 4*time.Second); code != wire.CloseLeaseExpired {
			t.Fatalf("closed with %d, want %d", code, wire.CloseLeaseExpired)
		}
	})
	t.Run("heartbeat", func(t *testing.T) {
		g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Heartbeat = time.Second })
		c := g.dial("alice", "silent", noPings)
		if code := closedWith(t, c, 4*time.Second); code != wire.CloseHeartbeatTimeout {
			t.Fatalf("closed with %d, want %d", code, wire.CloseHeartbeatTimeout)
		}
	})
}

// One live connection per device: a second is refused; a silent one is
// taken over and told so.
func TestOneConnectionPerDevice(t *testing.T) {
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Heartbeat = time.Second; c.Lease = time.Hour })
	first := g.dial("alice", "phone")
	tok, _ := g.tokens.Mint("alice", "phone", time.Hour)
	second, err := client.Connect(t.Context(), client.Config{URL: g.url(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Hello(t.Context()); client.CodeOf(err) != wire.CodeDuplicateLogin {
		t.Fatalf("second hello: %v, want duplicate_login", err)
	}
	if _, err := first.Do(t.Context(), wire.Request{Type: wire.TypePing}); err != nil {
		t.Fatalf("the first connection was disturbed: %v", err)
	}

	silent := g.dial("bob", "phone", noPings)
	time.Sleep(1200 * time.Millisecond) // silent past the heartbeat, not yet swept for sure
	g.dial("bob", "phone")
	if code := closedWith(t, silent, 3*time.Second); code != wire.CloseReplaced && code != wire.CloseHeartbeatTimeout {
		t.Fatalf("the silent connection closed with %d", code)
	}
}

// Pushes to a device that reads nothing fill its queue, bounded in bytes:
// it is closed as a slow consumer, and the gateway holds no more.
func TestQueueBoundedInBytes(t *testing.T) {
	g := newGateway(t, &fakeService{}, func(c *ws.Config) {
		c.MaxReplyBytes = 64 << 10
		c.MaxQueuedBytes = 2*(64<<10+wire.MaxMessageBytes) + 1
	})
	tok, _ := g.tokens.Mint("slow", "phone", time.Hour)
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A raw client: says hello and never reads again.
	raw, err := client.Connect(t.Context(), client.Config{URL: g.url(), Token: tok, PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Hello(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = raw.Raw().NetConn().(*net.TCPConn).SetReadBuffer(4096)
	body := strings.Repeat("x", 16<<10)
	for i := 0; i < 5000 && len(g.gw.Online("slow")) == 1; i++ {
		m := domain.Message{MsgID: domain.MsgID(1<<48 + i), Conversation: domain.DirectConversation("fast", "slow"),
			Sender: domain.Sender{Account: "fast", Device: "d"}, Body: body, ServerTime: time.Now()}
		if err := g.gw.Deliver(push.Push{Message: m, Recipients: []domain.AccountID{"slow"}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(g.gw.Online("slow")) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("a device that reads nothing is still connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A connection's requests run under a context that ends when it closes:
// a send waiting on the log is let go.
func TestCloseCancelsARequestInFlight(t *testing.T) {
	started, ended := make(chan struct{}), make(chan error, 1)
	svc := &fakeService{send: func(ctx context.Context, r api.SendRequest) (api.Ack, error) {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return api.Ack{}, ctx.Err()
	}}
	g := newGateway(t, svc, nil)
	c := g.dial("alice", "phone")
	go func() {
		_, _ = c.Do(context.Background(), wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: "c1", Body: "x"})
	}()
	<-started
	c.Close()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the request's context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the send still waits after its connection closed")
	}
}

// The client learns the code of a failure; the cause — a database's own
// words — stays in the server's log.
func TestFailureTextIsFixed(t *testing.T) {
	svc := &fakeService{send: func(context.Context, api.SendRequest) (api.Ack, error) {
		return api.Ack{}, fmt.Errorf("cannot check client message id: %w: pq: password authentication failed for user parley", api.ErrUnavailable)
	}}
	g := newGateway(t, svc, nil)
	c := g.dial("alice", "phone")
	_, err := c.Do(t.Context(), wire.Request{Type: wire.TypeSend, To: "bob", ClientMsgID: "c1", Body: "x"})
	if client.CodeOf(err) != wire.CodeUnavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
	if strings.Contains(err.Error(), "pq") || strings.Contains(err.Error(), "password") {
		t.Fatalf("the cause leaked to the client: %v", err)
	}
}

// claimGate holds the first claim of a route until told to go on.
type claimGate struct {
	*fakeRoutes
	held                       atomic.Bool
	claiming, proceed, claimed chan struct{}
}

func (r *claimGate) Claim(ctx context.Context, uid domain.UniqueID, instance string, force bool) (string, error) {
	if r.held.CompareAndSwap(false, true) {
		r.claiming <- struct{}{}
		<-r.proceed
		defer close(r.claimed)
	}
	return r.fakeRoutes.Claim(ctx, uid, instance, force)
}

// Release fails on a context that is done, as a store over the network does.
func (r *claimGate) Release(ctx context.Context, uid domain.UniqueID, instance string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.fakeRoutes.Release(ctx, uid, instance)
}

// A connection that closes while its hello claims the device's route
// leaves no route behind: its removal ran before the claim took it, and
// the hello gives it back. The device connects again at once.
func TestCloseDuringHelloLeavesNoRoute(t *testing.T) {
	routes := &claimGate{fakeRoutes: &fakeRoutes{routes: map[domain.UniqueID]string{}},
		claiming: make(chan struct{}), proceed: make(chan struct{}), claimed: make(chan struct{})}
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Routes = routes })
	tok, err := g.tokens.Mint("alice", "phone", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(t.Context(), client.Config{URL: g.url(), Token: tok, PingInterval: -1, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.Hello(context.Background()) }()
	select {
	case <-routes.claiming:
	case <-time.After(5 * time.Second):
		t.Fatal("the hello never claimed the route")
	}
	c.Drop()
	eventually(t, "the closed connection to be removed", func() bool { return len(g.gw.OnlineUIDs()) == 0 })
	close(routes.proceed)
	<-routes.claimed
	eventually(t, "the route claimed after the close to be released", func() bool {
		routes.mu.Lock()
		defer routes.mu.Unlock()
		return len(routes.routes) == 0
	})
	g.dial("alice", "phone")
}

// releaseGate holds every Release until proceed is closed, after telling
// releasing; released hears of the first once it is done.
type releaseGate struct {
	*fakeRoutes
	releasing chan struct{}
	proceed   chan struct{}
	released  chan struct{}
	first     sync.Once
	done      sync.Once
}

func (r *releaseGate) Release(ctx context.Context, uid domain.UniqueID, instance string) error {
	r.first.Do(func() { close(r.releasing) })
	<-r.proceed
	err := r.fakeRoutes.Release(ctx, uid, instance)
	r.done.Do(func() { close(r.released) })
	return err
}

// A device that connects again while the release of its last route is on
// its way keeps its route: the route names the instance, not the
// connection, so the late release would remove the new connection's —
// the gateway claims it back.
func TestReconnectSurvivesTheLateReleaseOfTheOldRoute(t *testing.T) {
	routes := &releaseGate{fakeRoutes: &fakeRoutes{routes: map[domain.UniqueID]string{}},
		releasing: make(chan struct{}), proceed: make(chan struct{}), released: make(chan struct{})}
	g := newGateway(t, &fakeService{}, func(c *ws.Config) { c.Routes = routes })
	first := g.dial("alice", "phone")
	first.Close()
	select {
	case <-routes.releasing:
	case <-time.After(5 * time.Second):
		t.Fatal("the closed connection never released its route")
	}
	g.dial("alice", "phone")
	close(routes.proceed)
	<-routes.released // the late release removed the new connection's route
	eventually(t, "the new connection's route to be held again", func() bool {
		routes.mu.Lock()
		defer routes.mu.Unlock()
		return routes.routes["alice/phone"] == "test:1"
	})
}

// eventually waits up to 5 s for cond, as the projections' tests do.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
