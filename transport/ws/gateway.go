// Package ws is Parley's WebSocket gateway on lxzan/gws: it authenticates
// devices at hello, keeps the local route table (uniqueId → connection),
// enforces the lease, heartbeat, rate limit and a bounded write queue per
// connection, turns requests into api calls, and delivers pushes.
package ws

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/ratelimit"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/wire"
)

// NoLimit, as a Config bound, turns the bound off.
const NoLimit = -1

// Config tunes the gateway. Every field has a default.
type Config struct {
	// Lease is how long a connection may live after hello or its last renew
	// (the "timelife" of the design notes). Default 10 minutes.
	Lease time.Duration
	// Heartbeat is the longest a connection may stay silent; clients ping
	// well within it. Default 60 seconds.
	Heartbeat time.Duration
	// HelloTimeout is how long a new connection has to say hello. Default 10s.
	HelloTimeout time.Duration
	// MaxQueuedBytes bounds the bytes waiting to be written to one
	// connection (replies and pushes); past it the connection is closed as
	// a slow consumer so that it resyncs, never silently skipped (I5).
	// While half of it is queued, the connection's requests wait unread,
	// so a client that sends faster than it reads its replies is slowed
	// down, not closed. Default 4 MiB.
	MaxQueuedBytes int
	// HelloQueueBytes is MaxQueuedBytes before hello: what an
	// unauthenticated connection may make the server hold. Default 8 KiB.
	HelloQueueBytes int
	// MaxQueuedBytesTotal bounds the bytes queued on every connection
	// together, and half of it those of one source address (see
	// Budget). A frame past it closes the connections furthest behind as
	// slow consumers, or its own if that is furthest behind. Default 1 GiB;
	// a node derives it from its memory limit.
	MaxQueuedBytesTotal int64
	// MaxReceivingBytesTotal bounds what the messages the gateway is
	// part way through reading hold, of every connection together, and
	// half of it those of one source address: a frame's payload as its
	// header announces it, from a read of the socket that finds the
	// message incomplete with nothing more waiting until its last frame
	// has arrived (a message that arrives whole is never counted). A
	// connection whose message does not fit is closed wire.CloseBusy.
	// Default MaxQueuedBytesTotal/2, at least 8 MiB.
	MaxReceivingBytesTotal int64
	// MaxPartialMessage is how long a client may take to send a message
	// once the gateway has begun to read it (the header of its first
	// frame): its buffer is held from then on. A connection whose
	// message is still incomplete after it, with nothing more waiting,
	// is closed wire.CloseMessageTimeout. Default 30 s: 128 KiB, the
	// largest frame, at 5 KB/s.
	MaxPartialMessage time.Duration
	// MaxReplyBytes bounds the messages of one sync reply, encoded; a page
	// cut by it has hasMore and a cursor after its last message. A reply
	// holds at least one message. Default 1 MiB.
	MaxReplyBytes int
	// MaxConnections bounds the open connections of the gateway; an
	// upgrade past it is refused with HTTP 503. Default 100,000.
	MaxConnections int
	// MaxConnectionsPerIP bounds the open connections from one source
	// address; an upgrade past it is refused with HTTP 429. Connections
	// of a trusted API gateway (Trusted) are not counted. Default 1,000;
	// NoLimit (or any negative value) for no limit.
	MaxConnectionsPerIP int
	// NewConnectionsPerIP bounds the rate of new connections (upgrades)
	// from one source address, a second, in bursts of MaxConnectionsPerIP,
	// unless MaxConnectionsPerIP is no limit (a trusted API gateway's are
	// not counted): a client that connects and closes as fast as it can
	// costs every hello's route claim and release, and the presence
	// changes it makes. An upgrade past it is refused with HTTP 429.
	// Default 100; NoLimit (or any negative value) for no limit.
	NewConnectionsPerIP float64
	// MaxHellosPerIP bounds the connections from one source address that
	// have not said hello yet (a trusted API gateway's are not counted),
	// unless MaxConnectionsPerIP is no limit; an upgrade past it is refused
	// with HTTP 429. Such a connection can
	// hold a frame's buffer (up to 256 KiB, the library's) for its hello
	// timeout without a token. Default 64; NoLimit (or any negative
	// value) for no limit.
	MaxHellosPerIP int
	// ReadBufferBytes is each connection's read buffer. Frames larger than
	// it are still read whole; a smaller buffer costs a few more syscalls
	// per large frame and saves memory on every idle connection. Default 1024:
	// 17.6 KiB → 12.5 KiB per idle connection (docs/benchmarks.md).
	ReadBufferBytes int
	// MaxPendingRequests bounds the requests of one connection waiting for
	// their turn (a send, a sync, ...; pings and renewals are answered at
	// once). More get rate_limited. Default 64.
	MaxPendingRequests int
	// WriteTimeout bounds one frame's write. Default 10s.
	WriteTimeout time.Duration
	// RatePerSecond and RateBurst limit requests per connection. Defaults 100 and 200.
	RatePerSecond float64
	RateBurst     int
	// SweepInterval is how often leases, heartbeats and hello deadlines are
	// checked. Default 1s.
	SweepInterval time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger

	// Routes is the global route table: of the cluster (Redis), or of this
	// process alone on a single node. Required.
	Routes Routes
	// Instance is the ip:port at which peers reach this gateway; the value
	// of its routes. Required with Routes.
	Instance string
	// ReplaceLogin is the "replace" duplicate-login policy: a new hello of a
	// uniqueId connected and alive elsewhere takes it over and the old
	// connection is closed with reason replaced. The default ("reject", as
	// the design notes say) refuses the new one with duplicate_login.
	ReplaceLogin bool
	// Kicker closes a device on another instance (for ReplaceLogin).
	Kicker Kicker
	// Trusted, when its Secret is set, accepts the identity an API gateway
	// in front has already authenticated (R1): a connection whose upgrade
	// request carries the shared secret in SecretHeader takes its account
	// and device from AccountHeader and DeviceHeader and needs no token in
	// its hello. Without the secret those headers are ignored.
	Trusted TrustedHeaders
	// Observer receives what metrics need; nil observes nothing.
	Observer Observer

	// Presence answers presence requests. Default: Routes, if it can.
	Presence PresenceSource
	// MaxPresenceWatches bounds the presence subscriptions of every
	// connection together (each connection has at most
	// wire.MaxPresenceAccounts); a request past it is answered
	// unavailable. Each takes about 70 bytes with 16-byte account ids,
	// 120 with 64-byte ones (BenchmarkPresenceSubscriptions), so the
	// default bounds them to about 70–120 MB. Default 1,000,000.
	MaxPresenceWatches int
}

// Observer is told about pushes, server-side closes, and how long
// requests and frames wait on a connection: the parts of a client's
// latency outside the API and the projections.
type Observer interface {
	// Pushed: a push accepted at accepted was queued on n connections.
	Pushed(n int, accepted time.Time)
	// Closed: the server closed a connection for reason.
	Closed(reason string)
	// RequestStarted: a request read off a connection waited d for the
	// connection's worker to start handling it.
	RequestStarted(d time.Duration)
	// FrameWritten: a frame (a reply, an ack or a push) queued on a
	// connection waited d until its write to the socket finished.
	FrameWritten(d time.Duration)
}

type noObserver struct{}

func (noObserver) Pushed(int, time.Time)        {}
func (noObserver) Closed(string)                {}
func (noObserver) RequestStarted(time.Duration) {}
func (noObserver) FrameWritten(time.Duration)   {}

// TrustedHeaders configures the trusted gateway mode.
type TrustedHeaders struct {
	// Secret shared with the API gateway; empty disables the mode.
	Secret string
	// SecretHeader carries the secret. Default
	// auth.DefaultGatewaySecretHeader.
	SecretHeader string
	// AccountHeader and DeviceHeader carry the identity. Defaults
	// "X-Parley-Account" and "X-Parley-Device".
	AccountHeader, DeviceHeader string
}

func (t *TrustedHeaders) setDefaults() {
	if t.SecretHeader == "" {
		t.SecretHeader = auth.DefaultGatewaySecretHeader
	}
	if t.AccountHeader == "" {
		t.AccountHeader = "X-Parley-Account"
	}
	if t.DeviceHeader == "" {
		t.DeviceHeader = "X-Parley-Device"
	}
}

// identity reads a trusted identity from r: ok false when the mode is off
// or the request does not carry the secret; an error when it carries the
// secret with a wrong value or a malformed identity.
func (t TrustedHeaders) identity(r *http.Request) (auth.Identity, bool, error) {
	if t.Secret == "" {
		return auth.Identity{}, false, nil
	}
	got := r.Header.Get(t.SecretHeader)
	if got == "" {
		return auth.Identity{}, false, nil
	}
	if !auth.SecretEqual([]byte(got), []byte(t.Secret)) {
		return auth.Identity{}, false, errors.New("wrong gateway secret")
	}
	a, err := domain.ParseAccountID(r.Header.Get(t.AccountHeader))
	if err != nil {
		return auth.Identity{}, false, err
	}
	d, err := domain.ParseDeviceID(r.Header.Get(t.DeviceHeader))
	if err != nil {
		return auth.Identity{}, false, err
	}
	return auth.Identity{Account: a, Device: d}, true, nil
}

// Routes is the global route table as the gateway uses it (R9).
type Routes interface {
	// Claim makes instance the route of uid unless another live instance
	// holds it: then it returns that owner and an error wrapping
	// domain.ErrConnectedElsewhere. force takes it regardless and returns
	// the previous owner.
	Claim(ctx context.Context, uid domain.UniqueID, instance string, force bool) (previous string, err error)
	// Release removes uid's route if instance still holds it.
	Release(ctx context.Context, uid domain.UniqueID, instance string) error
	// Refresh extends uid's route.
	Refresh(ctx context.Context, uid domain.UniqueID, instance string) error
}

// Kicker closes a device's connection on the instance that holds it.
type Kicker interface {
	Kick(instance string, uid domain.UniqueID)
}

func (c *Config) setDefaults() {
	if c.Lease == 0 {
		c.Lease = 10 * time.Minute
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 60 * time.Second
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.ReadBufferBytes == 0 {
		c.ReadBufferBytes = 1024
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 4 << 20
	}
	if c.HelloQueueBytes == 0 {
		c.HelloQueueBytes = 8 << 10
	}
	if c.MaxQueuedBytesTotal == 0 {
		c.MaxQueuedBytesTotal = 1 << 30
	}
	if c.MaxReceivingBytesTotal == 0 {
		c.MaxReceivingBytesTotal = max(c.MaxQueuedBytesTotal/2, 8<<20)
	}
	if c.MaxPartialMessage == 0 {
		c.MaxPartialMessage = 30 * time.Second
	}
	if c.MaxReplyBytes == 0 {
		c.MaxReplyBytes = 1 << 20
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 100_000
	}
	if c.MaxConnectionsPerIP == 0 {
		c.MaxConnectionsPerIP = 1000
	}
	if c.MaxHellosPerIP == 0 {
		c.MaxHellosPerIP = 64
	}
	if c.NewConnectionsPerIP == 0 {
		c.NewConnectionsPerIP = 100
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxPendingRequests == 0 {
		c.MaxPendingRequests = 64
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = 100
	}
	if c.RateBurst == 0 {
		c.RateBurst = 200
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Trusted.setDefaults()
	if c.Presence == nil {
		c.Presence, _ = c.Routes.(PresenceSource)
	}
	if c.MaxPresenceWatches == 0 {
		c.MaxPresenceWatches = 1_000_000
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Lease < time.Second {
		errs = append(errs, fmt.Errorf("ws: lease %v must be at least 1s", c.Lease))
	}
	if c.Heartbeat < time.Second {
		errs = append(errs, fmt.Errorf("ws: heartbeat %v must be at least 1s", c.Heartbeat))
	}
	if c.ReadBufferBytes < 256 {
		errs = append(errs, fmt.Errorf("ws: read buffer %d must be at least 256 bytes", c.ReadBufferBytes))
	}
	if c.MaxPartialMessage < 0 {
		errs = append(errs, fmt.Errorf("ws: max partial message %s cannot be negative", c.MaxPartialMessage))
	}
	if c.MaxReceivingBytesTotal < 2*wire.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("ws: max receiving bytes total %d must hold two frames of %d bytes", c.MaxReceivingBytesTotal, wire.MaxFrameBytes))
	}
	if c.MaxReplyBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("ws: max reply bytes %d must be at least 64 KiB", c.MaxReplyBytes))
	}
	// The largest reply (a page of MaxReplyBytes plus one message of up to
	// wire.MaxMessageBytes) must fit in an empty queue's lower half, which
	// is when a request is read.
	if c.MaxQueuedBytes < 2*(c.MaxReplyBytes+wire.MaxMessageBytes) {
		errs = append(errs, fmt.Errorf("ws: max queued bytes %d must be at least twice max reply bytes plus %d", c.MaxQueuedBytes, wire.MaxMessageBytes))
	}
	if c.HelloQueueBytes < 1024 {
		errs = append(errs, fmt.Errorf("ws: hello queue bytes %d must be at least 1024", c.HelloQueueBytes))
	}
	if c.MaxQueuedBytesTotal < int64(c.MaxQueuedBytes) {
		errs = append(errs, fmt.Errorf("ws: max queued bytes total %d must be at least max queued bytes", c.MaxQueuedBytesTotal))
	}
	if c.MaxPendingRequests < 1 {
		errs = append(errs, fmt.Errorf("ws: max pending requests %d must be positive", c.MaxPendingRequests))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("ws: max connections %d must be positive", c.MaxConnections))
	}
	if c.Trusted.Secret != "" && len(c.Trusted.Secret) < 16 {
		errs = append(errs, errors.New("ws: the trusted gateway secret needs at least 16 bytes"))
	}
	if c.Routes == nil || c.Instance == "" {
		errs = append(errs, errors.New("ws: a gateway needs a route table and its instance address"))
	}
	if c.MaxPresenceWatches < 0 {
		errs = append(errs, fmt.Errorf("ws: max presence watches %d must not be negative", c.MaxPresenceWatches))
	}
	if c.RatePerSecond <= 0 || c.RateBurst < 1 {
		errs = append(errs, fmt.Errorf("ws: rate %v/s burst %d must be positive", c.RatePerSecond, c.RateBurst))
	}
	return errors.Join(errs...)
}

// Service is what the gateway asks of the operations: transport/api's
// Service, or a fake in tests.
type Service interface {
	Send(ctx context.Context, r api.SendRequest) (api.Ack, error)
	Sync(ctx context.Context, by api.Actor, conversation string, lastTime time.Time, lastMsgID domain.MsgID, limit int, changes bool) (api.SyncResult, error)
	Conversations(ctx context.Context, by api.Actor, q api.ConversationsQuery) ([]api.Conversation, bool, error)
	CreateGroup(ctx context.Context, by api.Actor, name string, members []string) (*domain.Group, error)
	AddMembers(ctx context.Context, by api.Actor, group string, accounts []string) (*domain.Group, error)
	RemoveMembers(ctx context.Context, by api.Actor, group string, accounts []string) (*domain.Group, error)
	GroupsPage(ctx context.Context, by api.Actor, after string) ([]*domain.Group, bool, error)
	Read(ctx context.Context, r api.ReadRequest) (conversations.ReadState, error)
	Readers(ctx context.Context, by api.Actor, conversation string, msgID domain.MsgID) (api.Readers, error)
	Typing(ctx context.Context, who domain.AccountID, conversation string) (domain.ConversationID, []domain.AccountID, error)
	Edit(ctx context.Context, r api.EditRequest) (api.Ack, error)
	Delete(ctx context.Context, by domain.Sender, conversation string, id domain.MsgID, via api.Via) (api.Ack, error)
	Mute(ctx context.Context, by api.Actor, conversation string, untilMs int64) (api.MuteState, error)
	Unmute(ctx context.Context, by api.Actor, conversation string) (api.MuteState, error)
}

// Verifier checks the token of a hello or a renew.
type Verifier interface {
	Verify(token string) (auth.Identity, error)
}

// Gateway serves WebSocket connections.
type Gateway struct {
	cfg      Config
	svc      Service
	tokens   Verifier
	upgrader *gws.Upgrader
	log      *slog.Logger

	// budget bounds the bytes queued on every connection together.
	budget *Budget
	// receiving bounds what the messages being read hold together
	// (Config.MaxReceivingBytesTotal; countedConn.hold); loose charges
	// the connections not counted per address to it.
	receiving *Budget
	loose     receiver
	// fanout delivers typing signals (nil: this gateway).
	fanout push.Deliverer
	// presence is who watches whose presence here.
	presence presenceHub

	mu        sync.RWMutex
	all       map[*session]struct{}
	byUID     map[domain.UniqueID]*session
	byAccount map[domain.AccountID][]*session
	closing   bool
	aborted   bool
	// open counts the upgrades admitted and not yet ended, in all and per
	// source address (trusted gateways' connections uncounted per address).
	open int
	// sources counts the connections of each source address that has
	// some (sourceConns).
	sources map[string]*sourceConns
	// upgrades is each source address's rate of new connections
	// (Config.NewConnectionsPerIP); nil when it is off.
	upgrades *ratelimit.Keyed

	handler *handler

	stop     chan struct{}
	stopOnce sync.Once
	sweeper  sync.WaitGroup
	conns    sync.WaitGroup
	// workers counts the connections' request workers; Shutdown waits for
	// them, so that no request outlives the gateway. pool runs them.
	// workersMu guards workersDone, set once Shutdown waits for the
	// workers (none starts after), and the count's Add: not mu, which
	// every push holds to find its connections — a worker starts for
	// nearly every request, and a write lock there, waiting out the
	// pushes under way and holding back the next, had the read loops
	// queue behind one another on a busy machine.
	workersMu   sync.Mutex
	workersDone bool
	workers     sync.WaitGroup
	pool        *workerPool
}

// New returns a gateway; it starts its sweeper at once.
func New(cfg Config, svc Service, tokens Verifier) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg: cfg, svc: svc, tokens: tokens, log: cfg.Logger,
		all:       map[*session]struct{}{},
		byUID:     map[domain.UniqueID]*session{},
		byAccount: map[domain.AccountID][]*session{},
		sources:   map[string]*sourceConns{},
		budget:    NewBudget(cfg.MaxQueuedBytesTotal),
		receiving: NewBudget(cfg.MaxReceivingBytesTotal),
		upgrades:  newConnectionRate(cfg),
		stop:      make(chan struct{}),
	}
	g.loose = receiver{g: g}
	g.pool = newWorkerPool(g.stop)
	g.handler = &handler{g: g}
	g.upgrader = gws.NewUpgrader(g.handler, &gws.ServerOption{
		ReadMaxPayloadSize: wire.MaxFrameBytes,
		ReadBufferSize:     cfg.ReadBufferBytes,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   5 * time.Second,
		NewSession:         newStorage,
		// gws accepts every upgrade unless told otherwise: refuse new
		// connections while shutting down.
		Authorize: func(*http.Request, gws.SessionStorage) bool { return !g.isClosing() },
		// gws recovers no panic by default: a bug in one handler must not
		// take the process down.
		Recovery: gws.Recovery,
	})
	g.sweeper.Add(1)
	go g.sweep()
	return g, nil
}

// SetCluster sets how the gateway reaches other instances; call it before
// serving.
func (g *Gateway) SetCluster(k Kicker) { g.cfg.Kicker = k }

// Reassert writes the route of every connection here again, so that routing
// state lost in Redis (a flush, an eviction) comes back. A route that
// another live instance holds now means this connection was taken over: it
// is closed with reason replaced.
func (g *Gateway) Reassert(ctx context.Context) {
	g.mu.RLock()
	held := make([]*session, 0, len(g.byUID))
	for _, s := range g.byUID {
		held = append(held, s)
	}
	g.mu.RUnlock()
	for _, s := range held {
		if s.closed.Load() || !s.routed.Load() {
			continue // closed, or its hello's claim is still under way
		}
		if err := g.claimAgain(ctx, s); err != nil {
			g.log.Warn("cannot reassert routes", "err", err)
			return
		}
	}
}

// claimAgain writes s's route again. A route another live instance holds
// now means s was taken over: it is closed with reason replaced.
func (g *Gateway) claimAgain(ctx context.Context, s *session) error {
	_, err := g.cfg.Routes.Claim(ctx, s.uid, g.cfg.Instance, false)
	switch {
	case errors.Is(err, domain.ErrConnectedElsewhere):
		s.closeWith(wire.CloseReplaced, wire.ReasonReplaced, false)
	case err != nil:
		return err
	default:
		// The connection may have closed, and released its route,
		// before this claim landed: take it back.
		g.mu.RLock()
		current := g.byUID[s.uid] == s && !s.closed.Load()
		g.mu.RUnlock()
		if !current {
			if err := g.cfg.Routes.Release(ctx, s.uid, g.cfg.Instance); err != nil {
				g.log.Warn("cannot release a reasserted route", "uid", s.uid, "err", err)
			}
		}
	}
	return nil
}

// Fence closes every connection with reason route_lost: the gateway could
// not renew its liveness, so another gateway may take its devices over,
// and a device must not stay live here meanwhile. New hellos are not
// refused: they claim their route, which works again once the route table
// answers.
func (g *Gateway) Fence() int {
	g.mu.RLock()
	sessions := make([]*session, 0, len(g.all))
	for s := range g.all {
		sessions = append(sessions, s)
	}
	g.mu.RUnlock()
	for _, s := range sessions {
		s.closeWith(wire.CloseRouteLost, wire.ReasonRouteLost, false)
	}
	return len(sessions)
}

// Abort drops every connection without a close frame and leaves the routes
// in place, as a crash would. It exists for fault tests.
func (g *Gateway) Abort() {
	g.mu.Lock()
	g.closing, g.aborted = true, true
	sessions := make([]*session, 0, len(g.all))
	for s := range g.all {
		sessions = append(sessions, s)
	}
	g.mu.Unlock()
	for _, s := range sessions {
		s.closed.Store(true)
		_ = s.conn.NetConn().Close()
	}
}

func (g *Gateway) isAborted() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.aborted
}

// ServeHTTP upgrades the request and runs the connection.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, trusted, err := g.cfg.Trusted.identity(r)
	if err != nil {
		g.log.Warn("refused a trusted-gateway upgrade", "remote", r.RemoteAddr, "err", err)
		refuse(w, http.StatusUnauthorized, wire.CodeUnauthorized, "bad trusted gateway headers")
		return
	}
	source := ""
	if !trusted {
		source = ratelimit.AddressKey(r.RemoteAddr)
	}
	sc, status, code, text := g.admit(source)
	if status != 0 {
		w.Header().Set("Retry-After", "1")
		refuse(w, status, code, text)
		return
	}
	waiting := g.waiting(source, sc)
	defer func() {
		if err != nil {
			g.release(waiting)
		}
	}()
	var conn *gws.Conn
	conn, err = g.upgrade(w, r, waiting)
	if err != nil {
		g.log.Debug("upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	if trusted {
		conn.Session().Store(trustedKey, id)
	}
	conn.Session().Store(helloKey, waiting)
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		_ = conn.WriteClose(wire.CloseGoingAway, []byte(wire.ReasonShuttingDown))
		g.release(waiting)
		return
	}
	g.conns.Add(1) // under mu, so never concurrent with Shutdown's Wait at zero
	g.mu.Unlock()
	go g.readLoop(conn, waiting)
}

// readLoop runs a connection's read loop, then gives back what it held.
// It has no defers: its frame stays under every read of every
// connection, idle ones included (see countedConn.Read), and gws calls
// the handlers in it under a recovery of their own.
func (g *Gateway) readLoop(conn *gws.Conn, waiting *helloWait) {
	conn.ReadLoop()
	g.readDone(conn, waiting)
}

// readDone gives back what a connection held once its read loop ended.
func (g *Gateway) readDone(conn *gws.Conn, waiting *helloWait) {
	if cc, ok := conn.NetConn().(*countedConn); ok {
		cc.letGo()
	}
	g.release(waiting)
	g.conns.Done()
}

// upgrade is gws's Upgrade over a countedConn, so that every frame the
// client sends counts against its rate limit, and what its partial
// messages hold against the receive budget: its address's part of it
// when the address has a part of the queue's (waiting.share).
func (g *Gateway) upgrade(w http.ResponseWriter, r *http.Request, waiting *helloWait) (*gws.Conn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, errors.New("the connection cannot be taken over")
	}
	netConn, _, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	cc := &countedConn{Conn: netConn, recv: &g.loose}
	cc.tcp, _ = netConn.(*net.TCPConn)
	if waiting.share != nil {
		cc.recv = &waiting.sc.receiver
	}
	conn, err := g.upgrader.UpgradeFromConn(cc, bufio.NewReaderSize(cc, g.cfg.ReadBufferBytes), r)
	if err != nil {
		return nil, err
	}
	cc.ws = conn
	return conn, nil
}

// refuse answers an upgrade request that is not taken with a JSON error.
func refuse(w http.ResponseWriter, status int, code wire.Code, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"code":%q,"error":%q}`, code, text)
}

// sourceConns is what the gateway counts of one source address while it
// has connections: how many are open, how many of those wait for their
// hello, and the bytes all of them have queued (their part of the budget).
type sourceConns struct {
	open, hellos int // guarded by Gateway.mu
	queued       share
	// receiving is what the address's partial messages hold of the
	// receive budget, and receiver charges them to it.
	receiving share
	receiver  receiver
}

// maxRatedSources bounds the source addresses whose rate of new
// connections is kept (about 150 bytes each; a full bucket is forgotten
// first, see ratelimit.Keyed).
const maxRatedSources = 1 << 16

// newConnectionRate is the per-address rate of new connections of cfg,
// nil when there is none.
func newConnectionRate(cfg Config) *ratelimit.Keyed {
	if cfg.MaxConnectionsPerIP < 0 || cfg.NewConnectionsPerIP < 0 {
		return nil
	}
	return ratelimit.New(cfg.NewConnectionsPerIP, cfg.MaxConnectionsPerIP, maxRatedSources)
}

// admit counts a new connection from source ("" for one that is not
// counted per address, with no sourceConns), or says why it is refused.
func (g *Gateway) admit(source string) (sc *sourceConns, status int, code wire.Code, text string) {
	if source != "" && g.upgrades.Take(source, time.Now()) > 0 {
		return nil, http.StatusTooManyRequests, wire.CodeRateLimited, "too many new connections from this address"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if source != "" {
		sc = g.sources[source]
	}
	limited := sc != nil && g.cfg.MaxConnectionsPerIP > 0
	switch {
	case g.open >= g.cfg.MaxConnections:
		return nil, http.StatusServiceUnavailable, wire.CodeUnavailable, "the server is at its connection limit"
	case limited && sc.open >= g.cfg.MaxConnectionsPerIP:
		return nil, http.StatusTooManyRequests, wire.CodeRateLimited, "too many connections from this address"
	case limited && g.cfg.MaxHellosPerIP > 0 && sc.hellos >= g.cfg.MaxHellosPerIP:
		return nil, http.StatusTooManyRequests, wire.CodeRateLimited, "too many connections from this address have not said hello yet"
	}
	g.open++
	if source != "" {
		if sc == nil {
			sc = &sourceConns{}
			sc.receiver = receiver{g: g, share: &sc.receiving}
			g.sources[source] = sc
		}
		sc.open++
		sc.hellos++
	}
	return sc, 0, "", ""
}

// helloWait is a connection's place among its source's connections
// waiting for their hello: on until the hello is done or the connection
// ends, whichever comes first.
type helloWait struct {
	source string
	sc     *sourceConns // nil for a connection not counted per address
	on     atomic.Bool
	// share is the source's part of the queue budget, for the
	// connection's outbox; nil when not counted per address.
	share *share
}

// waiting is the helloWait of a connection admit counted.
func (g *Gateway) waiting(source string, sc *sourceConns) *helloWait {
	w := &helloWait{source: source, sc: sc}
	if sc != nil && g.cfg.MaxConnectionsPerIP > 0 {
		// Per-address limits are off when MaxConnectionsPerIP is no limit
		// (all clients behind one proxy share its address): the queue
		// share too, and the receive budget's (upgrade).
		w.share = &sc.queued
	}
	w.on.Store(true)
	return w
}

// helloDone gives w's place back, once.
func (g *Gateway) helloDone(w *helloWait) {
	if w.sc == nil || !w.on.CompareAndSwap(true, false) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	w.sc.hellos--
}

// release forgets a connection counted by admit.
func (g *Gateway) release(w *helloWait) {
	g.helloDone(w)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	if w.sc != nil {
		if w.sc.open--; w.sc.open <= 0 {
			delete(g.sources, w.source)
		}
	}
}

// startWorker counts a connection's new request worker, unless the
// gateway is past waiting for them.
func (g *Gateway) startWorker() bool {
	g.workersMu.Lock()
	defer g.workersMu.Unlock()
	if g.workersDone {
		return false
	}
	g.workers.Add(1)
	return true
}

func (g *Gateway) isClosing() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.closing
}

// Connections is the number of open connections, said hello or not.
func (g *Gateway) Connections() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.all)
}

// QueuedBytes is what every connection's outgoing queue holds now, as the
// queue budget counts it (Config.MaxQueuedBytesTotal).
func (g *Gateway) QueuedBytes() int64 { return g.budget.Used() }

// QueuedBytesLimit is the queue budget, Config.MaxQueuedBytesTotal.
func (g *Gateway) QueuedBytesLimit() int64 { return g.budget.limit }

// MaxWaitingConnsPerIP is how many connections of one source address the
// server that serves the gateway should let stay open outside a request
// (new ones, idle keep-alive ones, those sending a request's headers):
// four times MaxHellosPerIP, room for an HTTP client's pool of idle
// connections besides the upgrades under way; 0 when per-address limits
// are off, or when a trusted API gateway may connect (its connections are
// told apart only by their headers, and it may open many at once).
func (g *Gateway) MaxWaitingConnsPerIP() int {
	if g.cfg.MaxConnectionsPerIP <= 0 || g.cfg.MaxHellosPerIP <= 0 || g.cfg.Trusted.Secret != "" {
		return 0
	}
	return 4 * g.cfg.MaxHellosPerIP
}

// ReceivingBytes is what the messages the connections are part way
// through sending hold now, as their payloads' headers announced them
// (Config.MaxReceivingBytesTotal).
func (g *Gateway) ReceivingBytes() int64 { return g.receiving.Used() }

// ReceivingBytesLimit is the receive budget, Config.MaxReceivingBytesTotal.
func (g *Gateway) ReceivingBytesLimit() int64 { return g.receiving.limit }

// Shutdown closes every connection with reason shutting_down and waits for
// them to end, or for ctx. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closing = true
	sessions := make([]*session, 0, len(g.all))
	for s := range g.all {
		sessions = append(sessions, s)
	}
	g.mu.Unlock()
	g.stopOnce.Do(func() { close(g.stop) })
	for _, s := range sessions { // closing cancels the request each is waiting on
		s.closeWith(wire.CloseGoingAway, wire.ReasonShuttingDown, false)
	}
	done := make(chan struct{})
	go func() {
		g.conns.Wait()
		g.workersMu.Lock()
		g.workersDone = true // under workersMu, so never concurrent with startWorker's Add
		g.workersMu.Unlock()
		g.workers.Wait()
		g.sweeper.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cannot drain every connection: %w", ctx.Err())
	}
}

// sweep closes connections whose hello, lease or heartbeat ran out. One
// goroutine for all connections costs less than a timer each.
func (g *Gateway) sweep() {
	defer g.sweeper.Done()
	t := time.NewTicker(g.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			g.mu.RLock()
			var expired []func()
			for s := range g.all {
				if code, reason := s.expiry(now); code != 0 {
					// A connection that never said hello gets no queued
					// frame before its close: whatever it queued (pongs,
					// errors) is what it failed to read.
					immediate := code == wire.CloseHelloTimeout
					expired = append(expired, func() { s.closeWith(code, reason, immediate) })
				}
			}
			g.mu.RUnlock()
			for _, f := range expired {
				f()
			}
		}
	}
}

func (g *Gateway) add(s *session) {
	g.mu.Lock()
	closing := g.closing
	g.all[s] = struct{}{}
	g.mu.Unlock()
	if closing { // opened while Shutdown collected the connections
		s.closeWith(wire.CloseGoingAway, wire.ReasonShuttingDown, false)
	}
}

// register makes s the route of its uniqueId, here and in the cluster's
// route table. A live connection of the same uniqueId refuses it (unless
// the replace policy is on); a dead one (silent past the heartbeat, or on a
// dead instance) is taken over.
func (g *Gateway) register(ctx context.Context, s *session, id auth.Identity, now time.Time) (replaced *session, err error) {
	if replaced, err = g.registerLocal(s, id, now); err != nil {
		return nil, err
	}
	// A route held by another instance whose liveness has not lapsed is
	// not taken (under the reject policy), even if that instance cannot be
	// reached from here: it may still serve the device, and it closes its
	// connections itself before its liveness lapses (KeepAlive's fence).
	// So a device never has two live connections; after a crash, its
	// route is free once the liveness lapses (routes.AliveTTL).
	prev, err := g.cfg.Routes.Claim(ctx, s.uid, g.cfg.Instance, g.cfg.ReplaceLogin)
	gone := g.releaseIfRemoved(s)
	if err != nil || gone {
		g.mu.Lock()
		g.unrouteLocked(s)
		g.mu.Unlock()
		if replaced != nil {
			// It lost its local route to this hello: it must not stay
			// open unrouted, missing pushes. Close it so it resyncs.
			replaced.closeWith(wire.CloseReplaced, wire.ReasonReplaced, true)
		}
		switch {
		case gone:
			return nil, errClosedDuringHello
		case errors.Is(err, domain.ErrConnectedElsewhere):
			return nil, errDuplicateLogin
		}
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	if prev != "" && prev != g.cfg.Instance && g.cfg.Kicker != nil {
		g.cfg.Kicker.Kick(prev, s.uid)
	}
	s.routed.Store(true)
	return replaced, nil
}

// releaseIfRemoved reports whether s was removed (closed) while its
// hello claimed its route. Its removal may then have released the route
// before the claim took it (or the claim may have landed and failed on
// the closed connection's cancelled context): the route is released
// again, unless another connection of the device holds it here now.
func (g *Gateway) releaseIfRemoved(s *session) bool {
	g.mu.RLock()
	gone, taken := s.removed, g.byUID[s.uid] != nil
	g.mu.RUnlock()
	if gone && !taken && !g.isAborted() {
		g.releaseRoute(s.uid)
	}
	return gone
}

// errClosedDuringHello: the connection closed while its hello registered it.
var errClosedDuringHello = errors.New("the connection closed during its hello")

// registerLocal makes s, identified as id, the device's connection here,
// unless s was removed (closed) already.
func (g *Gateway) registerLocal(s *session, id auth.Identity, now time.Time) (replaced *session, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.removed {
		return nil, errClosedDuringHello
	}
	s.account, s.device = id.Account, id.Device
	s.uid = domain.NewUniqueID(id.Account, id.Device)
	if old := g.byUID[s.uid]; old != nil && old != s {
		if old.alive(now) && !g.cfg.ReplaceLogin {
			return nil, errDuplicateLogin
		}
		g.unrouteLocked(old)
		replaced = old
	}
	g.byUID[s.uid] = s
	if !slices.Contains(g.byAccount[s.account], s) {
		g.byAccount[s.account] = append(g.byAccount[s.account], s)
	}
	return replaced, nil
}

var errDuplicateLogin = errors.New("duplicate login")

// remove forgets a closed connection, and releases its route in the
// cluster if it still held it here.
func (g *Gateway) remove(s *session) {
	g.mu.Lock()
	s.removed = true
	delete(g.all, s)
	held := g.unrouteLocked(s)
	g.mu.Unlock()
	g.presence.drop(s)
	if held && !g.isAborted() {
		g.releaseRoute(s.uid)
	}
}

// releaseRoute gives back uid's route in the cluster if this instance
// holds it. It has a context of its own: the connection's is gone.
func (g *Gateway) releaseRoute(uid domain.UniqueID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.cfg.Routes.Release(ctx, uid, g.cfg.Instance); err != nil {
		g.log.Warn("cannot release a route; it expires by its TTL", "uid", uid, "err", err)
		return
	}
	// A route names this instance, not a connection: a new connection of
	// the device, registered here while this release was on its way, may
	// have claimed the route just before it landed. Claim it back for
	// that connection, or it would miss pushes routed from other
	// instances until the next Reassert.
	g.mu.RLock()
	s := g.byUID[uid]
	live := s != nil && !s.removed
	g.mu.RUnlock()
	if live {
		if err := g.claimAgain(ctx, s); err != nil {
			g.log.Warn("cannot claim a route back after releasing it", "uid", uid, "err", err)
		}
	}
}

// refresh extends s's route in the cluster, on renew.
func (g *Gateway) refresh(ctx context.Context, s *session) {
	if err := g.cfg.Routes.Refresh(ctx, s.uid, g.cfg.Instance); err != nil {
		g.log.Warn("cannot refresh a route", "uid", s.uid, "err", err)
	}
}

// unrouteLocked removes s from the local route table and reports whether
// it held the route of its uniqueId.
func (g *Gateway) unrouteLocked(s *session) bool {
	held := g.byUID[s.uid] == s
	if held {
		delete(g.byUID, s.uid)
	}
	if conns := slices.DeleteFunc(g.byAccount[s.account], func(x *session) bool { return x == s }); len(conns) == 0 {
		delete(g.byAccount, s.account)
	} else {
		g.byAccount[s.account] = conns
	}
	return held
}

// OnlineUIDs lists every device connected here, sorted.
func (g *Gateway) OnlineUIDs() []string {
	g.mu.RLock()
	out := make([]string, 0, len(g.byUID))
	for u := range g.byUID {
		out = append(out, string(u))
	}
	g.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Online lists the devices of account connected here.
func (g *Gateway) Online(account domain.AccountID) []domain.DeviceID {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []domain.DeviceID
	for _, s := range g.byAccount[account] {
		out = append(out, s.device)
	}
	return out
}
