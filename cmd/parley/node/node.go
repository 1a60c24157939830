// Package node is Parley's composition root: it wires one process — the
// event log (an embedded broker unless Kafka brokers are given), the read
// models and the projections that feed them, the operations, the
// WebSocket gateway and the HTTP endpoints — and runs nothing itself. The
// work belongs to the components: projections run in projections/runner,
// connections in transport/ws, liveness in transport/cluster. cmd/parley
// and the end-to-end tests build the same Node.
package node

import (
	"context"
	"errors"
	"fmt"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/infra/diskfree"
	"github.com/parley-chat/parley/infra/heaptrim"
	"github.com/parley-chat/parley/infra/idempotency"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/keys"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/telemetry"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/retention"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/console"
	"github.com/parley-chat/parley/transport/ws"
)

// Roles says what a process does. A single node does everything.
type Roles struct {
	// Gateway serves clients: WebSocket, the api operations, local pushes.
	Gateway bool
	// Projector runs the durable projections (store, cache) and push
	// routing, each as its own consumer group shared by every projector.
	Projector bool
}

// Config is everything a node needs. Zero values take the embedded
// defaults: a data directory under ./parley-data, the broker in-process on
// a free loopback port, the gateway on 127.0.0.1:8080, read models in memory.
type Config struct {
	// DataDir holds the embedded broker's log and the generated token secret.
	DataDir string
	// Listen is the HTTP address of the gateway (WebSocket at /ws).
	Listen string
	// HTTP bounds the HTTP server on Listen: timeouts and header size.
	HTTP HTTPServer
	// Roles of this process; zero means both.
	Roles Roles
	// Kafka configures the event log. With no Brokers the node runs the
	// embedded broker.
	Kafka kafka.Config
	// EmbeddedBroker configures the embedded broker (its DataDir defaults
	// to DataDir/log).
	EmbeddedBroker kafka.EmbeddedConfig
	// Postgres, when set, holds the message history (scale-out). Nil keeps
	// it in memory, rebuilt from the log at start.
	Postgres *postgres.Config
	// Redis, when set, holds the 7-day cache and the routing state
	// (scale-out). Nil keeps both in memory.
	Redis *redis.Config
	// Instance is the ip:port at which other instances reach this gateway
	// (its routes' value). Default: the address it listens on.
	Instance string
	// ClusterSecret authenticates the links between instances. Required
	// with Redis; every instance of a cluster shares it.
	ClusterSecret []byte
	// RouteReassert is how often a gateway writes its routes again, so that
	// routing state lost in Redis comes back. Default 30s.
	RouteReassert time.Duration
	// DirectoryURL is the user service that reloads a missed online set
	// (GET <url>/accounts/<account>/devices). Empty uses no directory.
	DirectoryURL string
	// TokenSecret signs client tokens. Empty: read DataDir/token.secret,
	// creating it with a random secret on first start.
	TokenSecret []byte
	// TokenIssuer and TokenAudience, when set, must be the "iss" and among
	// the "aud" of every client token (and tokens minted here carry them).
	// Empty accepts any issuer and refuses tokens that name an audience.
	TokenIssuer, TokenAudience string
	// TokenMaxLifetime bounds how long a client token may be valid (exp -
	// iat). Default auth.DefaultMaxLifetime.
	TokenMaxLifetime time.Duration
	// Gateway and API tune the WebSocket gateway and the operations.
	Gateway ws.Config
	API     api.Config
	// ServiceCredential lets services call the HTTP API on behalf of any
	// account (Authorization: Bearer svc:<credential>); empty disables
	// service calls. At least 16 bytes.
	ServiceCredential string
	// Console serves the web console at /console/ (chat playground, event
	// stream, lag and connections; read-only but for the chat itself).
	Console bool
	// DevTokens lets the console mint a token for any account and device,
	// and show its status and event stream without a credential, to local
	// requests only (console.Config.Local): for development only. It needs
	// a loopback Listen unless DevTokensUnsafe is set.
	DevTokens bool
	// DevTokensUnsafe acknowledges development tokens on a listener that is
	// not loopback: anyone who reaches it can then mint a token for any
	// account by sending a loopback Host (the Host and Origin checks stay).
	DevTokensUnsafe bool
	// GCPercent, if set, is the Go GC target applied at Start unless the
	// GOGC environment variable is set. Collections every 4x of the live
	// heap instead of 2x halve the p99 send latency on a busy 2-core box
	// (docs/benchmarks.md) for a few MB more.
	GCPercent int
	// MinFreeDisk, if set, is the free space (bytes) a single node keeps
	// under its embedded log and store: below it, appends are refused
	// (unavailable) and /readyz fails "disk", so that the read models keep
	// room to apply what was accepted — the embedded store stops the
	// process when a write to its own log fails. 0 leaves it off (the
	// serve command's default is 256 MiB).
	MinFreeDisk int64
	// MemoryLimit, if set, is the Go runtime's soft memory limit (as
	// GOMEMLIMIT), applied at Start unless GOMEMLIMIT is set: with a high
	// GCPercent the heap may otherwise grow to several times what is live.
	// The embedded store's cache and memtables are outside it.
	MemoryLimit int64
	// Pprof serves net/http/pprof under /debug/pprof/ (for profiling under
	// load; off by default).
	Pprof bool
	// CatchUpTimeout bounds how long a single node takes at start to apply
	// the log's tail after what its store holds. Default 10m.
	CatchUpTimeout time.Duration
	// Retention configures the history retention: how long messages are
	// kept (Keep, 0 forever) and its job, which runs on a single node and
	// on every projector. The cache keeps no longer than Keep either.
	// Observer and Logger are the node's.
	Retention retention.Config
	// CacheBytes bounds a single node's 7-day cache in memory (in front of
	// its embedded store). Default 32 MiB.
	CacheBytes int64
	// StoreCacheBytes is a single node's embedded store's block cache,
	// outside Go's heap: 0 for the default (128 MiB), else at least
	// parleypebble.MinCacheBytes.
	StoreCacheBytes int64
	// AcceptLogLoss starts on a log that ends below what Parley
	// acknowledged or applied, logging the loss instead of refusing
	// (LogLossError): for RepairLog only, which then moves to a new epoch.
	AcceptLogLoss bool
	// Offline runs the node without a listener: it serves no client, no
	// HTTP and no console (for RepairLog, which starts it only to apply
	// the log it holds, on a log about to be moved aside).
	Offline bool
	// Notify, when its URL is set, sends offline notifications to that
	// webhook (docs/notifications.md), from the projector.
	Notify notify.WebhookConfig
	// Logger is the process logger. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "parley-data"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	c.HTTP.setDefaults()
	if c.Roles == (Roles{}) {
		c.Roles = Roles{Gateway: true, Projector: true}
	}
	if c.EmbeddedBroker.DataDir == "" {
		c.EmbeddedBroker.DataDir = filepath.Join(c.DataDir, logDir)
	}
	if c.CatchUpTimeout == 0 {
		c.CatchUpTimeout = 10 * time.Minute
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 32 << 20
	}
	if c.RouteReassert == 0 {
		c.RouteReassert = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Gateway.Logger == nil {
		c.Gateway.Logger = c.Logger
	}
	if c.Kafka.Logger == nil {
		c.Kafka.Logger = c.Logger
	}
	if c.EmbeddedBroker.Logger == nil {
		c.EmbeddedBroker.Logger = c.Logger
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if (c.Postgres == nil) != (c.Redis == nil) {
		errs = append(errs, errors.New("scale-out needs both PostgreSQL and Redis (or neither, for a single node)"))
	}
	if c.Redis != nil && len(c.ClusterSecret) < 16 {
		errs = append(errs, errors.New("a cluster needs a cluster secret of at least 16 bytes"))
	}
	if c.Postgres == nil && c.Roles != (Roles{Gateway: true, Projector: true}) {
		errs = append(errs, errors.New("roles can be split only in scale-out (with PostgreSQL and Redis)"))
	}
	if c.Postgres != nil && len(c.Kafka.Brokers) == 0 && c.Roles != (Roles{Gateway: true, Projector: true}) {
		errs = append(errs, errors.New("split roles need a shared broker (--kafka-brokers, e.g. a `parley broker`)"))
	}
	if c.StoreCacheBytes != 0 && c.StoreCacheBytes < parleypebble.MinCacheBytes {
		errs = append(errs, fmt.Errorf("the embedded store's block cache needs at least %d bytes, not %d", parleypebble.MinCacheBytes, c.StoreCacheBytes))
	}
	errs = append(errs, c.HTTP.validate()...)
	if c.Notify.URL != "" {
		errs = append(errs, c.Notify.Validate())
	}
	if c.Console && c.DevTokens && !c.DevTokensUnsafe && !console.IsLoopback(c.Listen) {
		errs = append(errs, fmt.Errorf("development tokens let anyone who reaches %s sign in as any account: listen on a loopback address, turn them off (--dev-tokens off), or acknowledge it (--dev-tokens-unsafe)", c.Listen))
	}
	return errors.Join(errs...)
}

// Node is a running Parley process.
type Node struct {
	cfg     Config
	log     *slog.Logger
	metrics *telemetry.Metrics
	// ready keeps the readiness checks' last results.
	ready  *readiness
	recent *stream.Recent

	broker *kafka.Embedded
	events *kafka.Log
	tokens *auth.Tokens
	stores stores
	svc    *api.Service
	// keys seal the bodies of sends and edits and open them for the
	// projections (crypto-shredding); the key store is the read models' own.
	keys   *keys.Ring
	gw     *ws.Gateway
	clu    *clusterParts // nil on a single node
	runner *runner.Runner
	// drain are a single node's durable read models, which a clean stop
	// lets apply the whole log first (drainReadModels).
	drain []api.Progress
	// disk refuses appends while a single node's disk is nearly full (nil:
	// off).
	disk *diskfree.Guard
	http *http.Server
	ln   net.Listener

	// closers run in reverse at shutdown, after every goroutine ended.
	closers []func() error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	aborted atomic.Bool

	// lost is what the log had lost at start, with AcceptLogLoss.
	lost *LogLossError

	// backups is held while a backup is taken and streamed; once
	// backupsClosed, none starts (Shutdown closes the store next).
	backups       sync.Mutex
	backupsClosed bool

	shutdown sync.Once
	err      error
}

// Start builds the node, waits until its in-memory read models hold the
// log, and starts serving. It returns once clients can connect.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := finishRestore(ctx, cfg); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, metrics: telemetry.New(), recent: stream.NewRecent(500)}
	// Everything the node starts runs until Shutdown cancels runCtx.
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	defer func() {
		if err != nil {
			_ = n.Shutdown(context.Background())
		}
	}()
	if err := n.prepare(); err != nil {
		return nil, err
	}
	if err := n.openStores(ctx); err != nil {
		return nil, err
	}
	set, err := n.readModels(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.retentionJob(&set); err != nil {
		return nil, err
	}
	apiCfg := cfg.API
	apiCfg.Observer = n.metrics
	apiCfg.Logger = n.log
	apiCfg.Keys = n.keys
	if n.stores.rdb != nil {
		apiCfg.Reservations = idempotency.NewRedis(n.stores.rdb, n.stores.prefix)
		apiCfg.CompleteAfterAck = true
	}
	if n.disk = n.diskGuard(); n.disk != nil {
		apiCfg.WriteGate = n.disk.Err
	}
	n.svc = api.New(apiCfg, n.events, set.api)
	if cfg.Roles.Gateway {
		if err := n.startGateway(runCtx); err != nil {
			return nil, err
		}
		logout, err := n.logoutReader(runCtx)
		if err != nil {
			return nil, err
		}
		set.readers = append(set.readers, logout)
	}
	if cfg.Redis != nil {
		if n.clu, err = n.startCluster(); err != nil {
			return nil, err
		}
	}
	if push := n.pushReader(&set); push != nil {
		set.readers = append(set.readers, *push)
	}
	if err := n.notifyReader(ctx, &set); err != nil {
		return nil, err
	}
	if err := n.finishReaders(&set); err != nil {
		return nil, err
	}
	n.run(runCtx, set)
	if err := n.waitRebuilt(ctx); err != nil {
		return nil, err
	}
	if cfg.Offline {
		n.log.Info("parley running offline: no listener")
		return n, nil
	}
	if err := n.serveHTTP(); err != nil {
		return nil, err
	}
	if cfg.Roles.Gateway {
		n.log.Info("parley serving", "ws", "ws://"+n.ln.Addr().String()+"/ws", "instance", n.cfg.Instance)
	} else {
		n.log.Info("parley projector running", "ops", "http://"+n.ln.Addr().String()+"/readyz")
	}
	return n, nil
}

// prepare sets up the process: its GC target, the data dir, the event log,
// the token verifier, and the listener — which comes before the rest: a
// gateway's address is its identity in the route table. A projector
// listens too, for /healthz, /readyz and /metrics.
func (n *Node) prepare() error {
	cfg := n.cfg
	if _, set := os.LookupEnv("GOGC"); cfg.GCPercent > 0 && !set {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); cfg.MemoryLimit > 0 && !set {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("cannot create data dir: %w", err)
	}
	if err := n.openLog(); err != nil {
		return err
	}
	secret := cfg.TokenSecret
	if len(secret) == 0 {
		var err error
		if secret, err = auth.LoadOrCreateSecret(cfg.DataDir); err != nil {
			return err
		}
	}
	var err error
	if n.tokens, err = auth.New(auth.Config{Secret: secret, Issuer: cfg.TokenIssuer, Audience: cfg.TokenAudience, MaxLifetime: cfg.TokenMaxLifetime}); err != nil {
		return err
	}
	if cfg.Offline {
		if n.cfg.Instance == "" {
			n.cfg.Instance = "offline"
		}
		return nil
	}
	if n.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("cannot listen on %s: %w", cfg.Listen, err)
	}
	if n.cfg.Instance == "" {
		n.cfg.Instance = n.ln.Addr().String()
	}
	return nil
}

// run starts the projections and the background work of the read models
// and the service, until ctx ends.
func (n *Node) run(ctx context.Context, set readModelSet) {
	n.runner = runner.New(runner.Config{Epoch: n.events.Epoch(), Logger: n.log, Observer: n.metrics, Keys: n.keys}, set.readers...)
	n.goOwned(func() {
		if err := n.runner.Run(ctx); err != nil {
			n.log.Error("projections stopped", "err", err)
		}
	})
	n.goOwned(func() { n.svc.Run(ctx) })
	n.goOwned(func() { heaptrim.New(heaptrim.Config{Logger: n.log}).Run(ctx) })
	if n.disk != nil {
		n.goOwned(func() { n.disk.Run(ctx) })
	}
	for _, run := range set.run {
		n.goOwned(func() { run(ctx) })
	}
}

// DrainTimeout bounds how long a clean stop waits for a single node's
// durable read models to apply the whole log.
const DrainTimeout = 5 * time.Second

// drainReadModels lets a single node's durable read models apply every
// record the log holds before the stop (no new one comes now): the
// store then holds every acked message even if the log is lost before
// the next start. Past DrainTimeout (or ctx) the stop goes on, and the
// next start applies the rest from the log.
func (n *Node) drainReadModels(ctx context.Context) {
	if len(n.drain) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, DrainTimeout)
	defer cancel()
	ends, err := n.events.EndOffsets(ctx)
	if err == nil {
		for _, t := range n.drain {
			if err = t.WaitForAll(ctx, ends); err != nil {
				break
			}
		}
	}
	if err != nil {
		n.log.Warn("the read models had not applied the whole log at the stop; the next start applies the rest", "err", err)
	}
}

// goOwned runs f on a goroutine that Shutdown waits for.
func (n *Node) goOwned(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// openLog starts the embedded broker unless brokers are configured, and
// opens the event log.
func (n *Node) openLog() error {
	if len(n.cfg.Kafka.Brokers) == 0 {
		if err := n.embeddedEpoch(); err != nil {
			return err
		}
		b, err := kafka.StartEmbedded(n.cfg.EmbeddedBroker)
		if err != nil {
			return err
		}
		n.broker = b
		n.cfg.Kafka.Brokers = b.Addrs()
		n.cfg.Kafka.Embedded = b // appends in process, not over loopback
		n.cfg.Kafka.OwnRetention = true
		n.log.Info("embedded broker listening", "addrs", n.cfg.Kafka.Brokers, "dir", n.cfg.EmbeddedBroker.DataDir)
	}
	l, err := kafka.Open(n.cfg.Kafka)
	if err != nil {
		return err
	}
	n.events = l
	return nil
}

// startGateway builds the WebSocket gateway over the operations, and has
// the route table tell it of every presence change until ctx ends.
func (n *Node) startGateway(ctx context.Context) error {
	gwCfg := n.cfg.Gateway
	if gwCfg.MaxQueuedBytesTotal == 0 {
		gwCfg.MaxQueuedBytesTotal = queueBudget(debug.SetMemoryLimit(-1))
	}
	gwCfg.Observer = n.metrics
	gwCfg.Instance = n.cfg.Instance
	gwCfg.Routes = n.stores.routes
	gw, err := ws.New(gwCfg, n.svc, n.tokens)
	if err != nil {
		return err
	}
	n.gw = gw
	wait, err := n.stores.routes.WatchPresence(ctx, gw.PresenceChanged, func() { gw.PresenceResync(ctx) })
	if err != nil {
		return err
	}
	n.goOwned(wait)
	return nil
}

// queueBudget is what every connection's outgoing queue may hold together
// under the process's memory limit (math.MaxInt64 for none): a quarter of
// it, at least 16 MiB; no limit leaves the gateway's default. Frames
// queued unread are heap, and a budget above the limit would let slow
// readers hold the heap past it, the collector running without end.
func queueBudget(memoryLimit int64) int64 {
	if memoryLimit == math.MaxInt64 {
		return 0
	}
	return max(memoryLimit/4, 16<<20)
}

// waitRebuilt waits until every in-memory read model holds the log as it
// was when the node started.
func (n *Node) waitRebuilt(ctx context.Context) error {
	ends, err := n.events.EndOffsets(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.CatchUpTimeout)
	defer cancel()
	started := time.Now()
	if err := n.runner.WaitRebuilt(ctx, ends); err != nil {
		return err
	}
	var records int64
	for _, e := range ends {
		records += e
	}
	n.log.Info("read models hold the log", "records", records, "took", time.Since(started).Round(time.Millisecond))
	// Reading the log's files and its tail at start leaves garbage the size
	// of the log behind; give it back now rather than whenever the heap
	// next nears its limit.
	debug.FreeOSMemory()
	return nil
}

// Addr is the gateway's listening address.
func (n *Node) Addr() string {
	if n.ln == nil {
		return "" // Offline
	}
	return n.ln.Addr().String()
}

// BrokerAddrs are the Kafka bootstrap addresses the node uses.
func (n *Node) BrokerAddrs() []string { return n.events.Brokers() }

// Tokens signs tokens with the node's secret (for tests and `parley token`).
func (n *Node) Tokens() *auth.Tokens { return n.tokens }

// Gateway is the node's WebSocket gateway.
func (n *Node) Gateway() *ws.Gateway { return n.gw }

// Service is the node's api service, the transport-independent operations
// that the WebSocket gateway and the HTTP API share.
func (n *Node) Service() *api.Service { return n.svc }

// Abort stops the node as a crash would: connections drop without a close
// frame, routes and the liveness key stay behind in Redis (to expire), and
// nothing is flushed gracefully. It exists for fault tests.
func (n *Node) Abort() {
	n.aborted.Store(true)
	if n.gw != nil {
		n.gw.Abort()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Shutdown(ctx)
}

// Shutdown stops accepting connections, closes every connection with
// reason shutting_down, stops the projections and the log. Idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdown.Do(func() {
		var errs []error
		if n.http != nil {
			_ = n.http.Close() // hijacked WebSockets are not affected; the gateway drains them
		} else if n.ln != nil {
			_ = n.ln.Close()
		}
		if n.clu != nil {
			n.clu.stop() // first: routes this gateway fails to release count as dead at once
		}
		n.closeBackups() // after the HTTP server: its close cut the stream
		if n.gw != nil {
			errs = append(errs, n.gw.Shutdown(ctx))
		}
		if n.events != nil && n.svc != nil && !n.aborted.Load() {
			// No new sends come now; those whose callers gave up on the
			// log settle while the service still completes or abandons
			// their reservations, not after it let them lapse.
			n.events.Settle()
			n.drainReadModels(ctx)
		}
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		for i := len(n.closers) - 1; i >= 0; i-- {
			errs = append(errs, n.closers[i]())
		}
		if n.events != nil {
			errs = append(errs, n.events.Close())
		}
		if n.broker != nil {
			n.broker.Close()
		}
		n.err = errors.Join(errs...)
	})
	return n.err
}
