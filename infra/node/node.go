// Package node composes one Parley process: the event log (an embedded
// broker unless Kafka brokers are given), the read models and their
// projections, the api service and the WebSocket gateway. cmd/parley and
// the end-to-end tests build the same Node.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/infra/telemetry"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/logout"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/cluster"
	"github.com/parley-chat/parley/transport/console"
	"github.com/parley-chat/parley/transport/httpapi"
	"github.com/parley-chat/parley/transport/ws"
	goredis "github.com/redis/go-redis/v9"
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
	// Pprof serves net/http/pprof under /debug/pprof/ (for profiling under
	// load; off by default).
	Pprof bool
	// CatchUpTimeout bounds the rebuild of the in-memory read models at
	// start. Default 10m.
	CatchUpTimeout time.Duration
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
		c.EmbeddedBroker.DataDir = filepath.Join(c.DataDir, "log")
	}
	if c.CatchUpTimeout == 0 {
		c.CatchUpTimeout = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Gateway.Logger == nil {
		c.Gateway.Logger = c.Logger
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
	errs = append(errs, c.HTTP.validate()...)
	if c.Console && c.DevTokens && !c.DevTokensUnsafe && !console.IsLoopback(c.Listen) {
		errs = append(errs, fmt.Errorf("development tokens let anyone who reaches %s sign in as any account: listen on a loopback address, turn them off (--dev-tokens off), or acknowledge it (--dev-tokens-unsafe)", c.Listen))
	}
	return errors.Join(errs...)
}

// Node is a running Parley process.
type Node struct {
	cfg    Config
	log    *slog.Logger
	broker *kafka.Embedded
	events *kafka.Log
	router *message.Router
	gw     *ws.Gateway
	svc    *api.Service
	http   *http.Server
	ln     net.Listener
	tokens *auth.Tokens
	pool   *pgxpool.Pool
	rdb    *goredis.Client
	table  routes.Table
	links  *cluster.Links

	closers []func() error // run in reverse at shutdown, after the router
	metrics *telemetry.Metrics
	tracked []tracked
	recent  *stream.Recent

	stop     chan struct{} // closed at shutdown, for the node's own goroutines
	aborted  atomic.Bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown sync.Once
	err      error
}

// projection is one Watermill handler of the node.
type projection struct {
	name     string
	p        projections.Projection
	progress projections.Tracker
	sub      kafka.SubscriberConfig
	// rebuild: an in-memory model the node waits for before serving.
	rebuild bool
	// topic, if not the conversation topic.
	topic string
}

// Start builds the node, rebuilds the in-memory read models from the log,
// and starts serving. It returns once clients can connect.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), metrics: telemetry.New(), recent: stream.NewRecent(500)}
	if _, set := os.LookupEnv("GOGC"); cfg.GCPercent > 0 && !set {
		debug.SetGCPercent(cfg.GCPercent)
	}
	defer func() {
		if err != nil {
			_ = n.Shutdown(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data dir: %w", err)
	}
	secret, err := tokenSecret(cfg)
	if err != nil {
		return nil, err
	}
	if n.tokens, err = auth.New(auth.Config{Secret: secret, Issuer: cfg.TokenIssuer, Audience: cfg.TokenAudience, MaxLifetime: cfg.TokenMaxLifetime}); err != nil {
		return nil, err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		if n.broker, err = kafka.StartEmbedded(cfg.EmbeddedBroker); err != nil {
			return nil, err
		}
		cfg.Kafka.Brokers = n.broker.Addrs()
		n.log.Info("embedded broker listening", "addrs", cfg.Kafka.Brokers, "dir", cfg.EmbeddedBroker.DataDir)
	}
	if n.events, err = kafka.Open(cfg.Kafka); err != nil {
		return nil, err
	}
	// The listener comes first: a gateway's address is its identity in the
	// route table. A projector listens too, for /healthz, /readyz, /metrics.
	if n.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", cfg.Listen, err)
	}
	if n.cfg.Instance == "" {
		n.cfg.Instance = n.ln.Addr().String()
	}

	rm, all, err := n.readModels(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Postgres != nil {
		if rm, all, err = n.durableReadModels(ctx, rm, all); err != nil {
			return nil, err
		}
	}
	apiCfg := cfg.API
	apiCfg.Observer = n.metrics
	n.svc = api.New(apiCfg, n.events, rm)
	if cfg.Roles.Gateway {
		gwCfg := cfg.Gateway
		gwCfg.Observer = n.metrics
		if cfg.Redis != nil {
			gwCfg.Routes, gwCfg.Instance = n.table, n.cfg.Instance
		}
		if n.gw, err = ws.New(gwCfg, n.svc, n.tokens); err != nil {
			return nil, err
		}
	}
	if n.gw != nil {
		// Every gateway reads every logout: without a consumer group, from
		// the end of the topic at start (its connections are all newer).
		all = append(all, projection{name: logout.Name, p: logout.NewProjection(n.gw), progress: projections.NewProgress(),
			topic: n.events.UsersTopic(), sub: kafka.SubscriberConfig{FromNewest: true}})
	}
	if pushProj, err := n.pushProjection(rm); err != nil {
		return nil, err
	} else if pushProj != nil {
		all = append(all, *pushProj)
	}

	wlog := watermill.NewSlogLoggerWithLevelMapping(n.log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	if n.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog); err != nil {
		return nil, err
	}
	epoch := n.events.Epoch()
	for _, p := range all {
		if p.topic == "" {
			n.tracked = append(n.tracked, tracked{name: p.name, progress: p.progress, inMemory: p.rebuild})
		}
	}
	// The in-memory read models share one reader of the log; the durable
	// ones (with a consumer group) read in batches.
	all = fanOutInMemory(all)
	var batched []projection
	for _, p := range all {
		if p.sub.Group != "" && p.topic == "" {
			batched = append(batched, p)
			continue
		}
		sub, err := n.events.NewSubscriber(p.sub, wlog)
		if err != nil {
			return nil, err
		}
		topic := p.topic
		if topic == "" {
			topic = n.events.Topic()
		}
		n.router.AddConsumerHandler(p.name, topic, sub, projections.Handler(p.name, p.p, epoch, p.progress, n.log))
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	for _, p := range batched {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			_ = n.events.RunBatchConsumer(runCtx, kafka.BatchConsumerConfig{Group: p.name, Logger: n.log}, n.batchHandler(p))
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.router.Run(runCtx); err != nil {
			n.log.Error("projections stopped", "err", err)
		}
	}()
	select {
	case <-n.router.Running():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := n.rebuild(ctx, all); err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go n.housekeeping(runCtx, rm.Cache)

	n.registerMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", n.healthz)
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", n.metrics.Handler())
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if cfg.Roles.Gateway {
		mux.Handle("/ws", n.gw)
		h, err := httpapi.New(httpapi.Config{Service: n.svc, Tokens: n.tokens, ServiceCredential: cfg.ServiceCredential,
			Online: n.online, Logger: n.log})
		if err != nil {
			return nil, err
		}
		mux.Handle("/api/", h)
		if cfg.Console {
			cc := console.Config{Stream: n.recent, Status: n.consoleStatus, AnyListener: cfg.DevTokensUnsafe,
				ServiceCredential: cfg.ServiceCredential, Logger: n.log}
			if cfg.DevTokens {
				cc.DevTokens = n.tokens
				n.log.Warn("development tokens are on: the console mints a token for any account to a request from this machine "+
					"(loopback Host, the console's own Origin); turn them off with --dev-tokens off outside development",
					"listen", n.ln.Addr().String(), "unsafe", cfg.DevTokensUnsafe)
			}
			ch, err := console.New(cc)
			if err != nil {
				return nil, err
			}
			mux.Handle("/console/", ch)
			mux.Handle("GET /{$}", http.RedirectHandler("/console/", http.StatusFound))
		}
		if cfg.Redis != nil {
			mux.Handle(cluster.Path, cluster.NewReceiver(cfg.ClusterSecret, n.gw, n.log))
		}
	}
	n.http = cfg.HTTP.server(mux)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	if cfg.Roles.Gateway {
		n.log.Info("parley serving", "ws", "ws://"+n.ln.Addr().String()+"/ws", "instance", n.cfg.Instance)
	} else {
		n.log.Info("parley projector running", "ops", "http://"+n.ln.Addr().String()+"/readyz")
	}
	return n, nil
}

// readModels builds the in-memory read models of this process, rebuilt
// from the log at every start: groups and the conversation list always,
// and the store and the cache of a single node.
func (n *Node) readModels(ctx context.Context) (api.ReadModels, []projection, error) {
	cfg := n.cfg
	epoch := n.events.Epoch()
	groupModel, convModel := groups.NewMemory(), conversations.NewMemory()
	rm := api.ReadModels{
		Groups: groupModel, GroupsProgress: projections.NewProgress(),
		Conversations: convModel, ConversationsProgress: projections.NewProgress(),
	}
	all := []projection{
		{name: groups.Name, p: groupModel, progress: rm.GroupsProgress, rebuild: true},
		{name: conversations.Name, p: convModel, progress: rm.ConversationsProgress, rebuild: true},
		{name: stream.Name, p: n.recent, progress: projections.NewProgress(), rebuild: true},
	}
	if cfg.Postgres == nil {
		rm.Store, rm.StoreProgress = store.NewMemory(), projections.NewProgress()
		rm.Cache, rm.CacheProgress = cache.NewMemory(cache.Retention), projections.NewProgress()
		all = append(all,
			projection{name: store.Name, p: store.NewProjection(rm.Store), progress: rm.StoreProgress, rebuild: true},
			projection{name: cache.Name, p: cache.NewProjection(rm.Cache, epoch, true), progress: rm.CacheProgress, rebuild: true})
	}
	return rm, all, nil
}

// durableReadModels opens PostgreSQL and Redis for the store, the cache
// and the routes, and adds the durable projections when this process is a
// projector.
func (n *Node) durableReadModels(ctx context.Context, rm api.ReadModels, all []projection) (api.ReadModels, []projection, error) {
	cfg := n.cfg
	epoch := n.events.Epoch()

	var err error
	if n.pool, err = postgres.Open(ctx, *cfg.Postgres); err != nil {
		return rm, nil, err
	}
	n.closers = append(n.closers, func() error { n.pool.Close(); return nil })
	if n.rdb, err = redis.Open(ctx, *cfg.Redis); err != nil {
		return rm, nil, err
	}
	n.closers = append(n.closers, n.rdb.Close)
	prefix := cfg.Redis.Prefix
	if prefix == "" {
		prefix = redis.DefaultPrefix
	}
	// Offsets restart at zero in a new log epoch, so progress is kept per
	// epoch: an old epoch's high offsets must not vouch for the new log.
	epochTag := fmt.Sprintf("@e%d", epoch)
	storeProgress, err := store.NewPostgresProgress(ctx, n.pool, store.PostgresProgressConfig{Projection: store.Name + epochTag, Logger: n.log})
	if err != nil {
		return rm, nil, err
	}
	n.closers = append(n.closers, storeProgress.Close)
	cacheProgress, err := cache.NewRedisProgress(n.rdb, cache.RedisProgressConfig{Prefix: prefix + epochTag[1:] + ":"})
	if err != nil {
		return rm, nil, err
	}
	n.closers = append(n.closers, cacheProgress.Close)
	// Partitions apply one record at a time each; group commit lets their
	// concurrent writes share one round trip and commit (about twice the
	// throughput, see BenchmarkProjectionWrites).
	rm.Store, rm.StoreProgress = store.NewGroupCommit(store.NewPostgres(n.pool), 0), storeProgress
	redisCache, err := cache.NewRedis(n.rdb, cache.RedisConfig{Prefix: prefix})
	if err != nil {
		return rm, nil, err
	}
	rm.Cache, rm.CacheProgress = redisCache, cacheProgress

	var dir routes.Directory = routes.NoDirectory{}
	if cfg.DirectoryURL != "" {
		if dir, err = routes.NewHTTPDirectory(cfg.DirectoryURL); err != nil {
			return rm, nil, err
		}
	}
	n.table = routes.NewRedis(n.rdb, prefix, dir)
	if cfg.Roles.Projector {
		all = append(all,
			projection{name: store.Name, p: store.NewProjection(rm.Store), progress: rm.StoreProgress, sub: kafka.SubscriberConfig{Group: store.Name}},
			projection{name: cache.Name, p: cache.NewProjection(rm.Cache, epoch, false), progress: rm.CacheProgress, sub: kafka.SubscriberConfig{Group: cache.Name}})
	}
	return rm, all, nil
}

// pushProjection is the push projection of this process, if it runs one:
// a single node pushes to its own gateway; in scale-out the projectors
// route every push through the route table, and gateways beat their
// liveness so that their routes count.
func (n *Node) pushProjection(rm api.ReadModels) (*projection, error) {
	members := groups.At{Model: rm.Groups.(*groups.Memory), Progress: rm.GroupsProgress}
	if n.cfg.Redis == nil {
		return &projection{name: push.Name, p: push.NewProjection(n.gw, members), progress: projections.NewProgress(), rebuild: true}, nil
	}
	n.links = cluster.NewLinks(n.cfg.ClusterSecret, 0, n.log)
	n.closers = append(n.closers, func() error { n.links.Close(); return nil })
	var local cluster.Local
	if n.gw != nil {
		local = n.gw
		n.wg.Add(1)
		go n.beat()
	}
	rtr := cluster.NewRouter(n.table, n.cfg.Instance, local, n.links, n.log)
	if n.gw != nil {
		n.gw.SetCluster(rtr, n.links)
	}
	if !n.cfg.Roles.Projector {
		return nil, nil
	}
	// A new push group starts at the beginning of the log, not its end: a
	// group that started at the end would skip the records appended while
	// it joined. Devices ignore pushes of messages they hold.
	return &projection{name: push.Name, p: push.NewProjection(rtr, members), progress: projections.NewProgress(),
		sub: kafka.SubscriberConfig{Group: push.Name}}, nil
}

// beat keeps this gateway's liveness key fresh until shutdown, then
// removes it so that its routes can be taken over at once.
func (n *Node) beat() {
	defer n.wg.Done()
	reassert := n.cfg.RouteReassert
	if reassert == 0 {
		reassert = 30 * time.Second
	}
	beat := time.NewTicker(routes.AliveTTL / 3)
	defer beat.Stop()
	again := time.NewTicker(reassert)
	defer again.Stop()
	n.beatOnce()
	for {
		select {
		case <-n.stop:
			if !n.aborted.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = n.table.Forget(ctx, n.cfg.Instance)
				cancel()
			}
			return
		case <-beat.C:
			n.beatOnce()
		case <-again.C:
			n.beatOnce()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			n.gw.Reassert(ctx)
			cancel()
		}
	}
}

func (n *Node) beatOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.table.Beat(ctx, n.cfg.Instance); err != nil {
		n.log.Warn("cannot beat liveness", "err", err)
	}
}

// batchHandler decodes a batch of one partition's records and applies them
// to p; unknown events and poison records are logged and skipped.
func (n *Node) batchHandler(p projection) kafka.BatchHandler {
	epoch := n.events.Epoch()
	return func(ctx context.Context, batch []kafka.RawRecord) error {
		recs := make([]projections.Record, 0, len(batch))
		for _, r := range batch {
			rec, err := projections.Decode(r.Name, r.Payload, events.Position{Partition: r.Partition, Offset: r.Offset}, epoch, r.Timestamp)
			if err != nil {
				n.log.Warn("skipping a record", "projection", p.name, "partition", r.Partition, "offset", r.Offset, "err", err)
				continue
			}
			recs = append(recs, rec)
		}
		if len(recs) == 0 {
			last := batch[len(batch)-1]
			p.progress.Advance(last.Partition, last.Offset)
			return nil
		}
		if err := projections.ApplyRecords(ctx, p.p, recs, p.progress); err != nil {
			return err
		}
		if last := batch[len(batch)-1]; last.Offset > recs[len(recs)-1].Position.Offset {
			p.progress.Advance(last.Partition, last.Offset)
		}
		return nil
	}
}

// fanOutInMemory replaces the in-memory projections (those rebuilt from
// the log without a consumer group) with one Fanout handler applying them
// in order: one reader of the log instead of one each.
func fanOutInMemory(all []projection) []projection {
	var parts projections.Fanout
	var rest []projection
	for _, p := range all {
		if p.rebuild && p.topic == "" && p.sub == (kafka.SubscriberConfig{}) {
			parts = append(parts, projections.Part{Name: p.name, Projection: p.p, Progress: p.progress})
			continue
		}
		rest = append(rest, p)
	}
	if len(parts) == 0 {
		return rest
	}
	return append(rest, projection{name: "parley.projections.memory", p: parts, progress: projections.NewProgress(), rebuild: true})
}

// rebuild waits until every in-memory read model holds the whole log.
func (n *Node) rebuild(ctx context.Context, all []projection) error {
	ends, err := n.events.EndOffsets()
	if err != nil {
		return err
	}
	catchCtx, cancel := context.WithTimeout(ctx, n.cfg.CatchUpTimeout)
	defer cancel()
	started := time.Now()
	for _, p := range all {
		if !p.rebuild {
			continue
		}
		if err := p.progress.WaitForAll(catchCtx, ends); err != nil {
			return fmt.Errorf("cannot rebuild %s: %w", p.name, err)
		}
	}
	var records int64
	for _, e := range ends {
		records += e
	}
	n.log.Info("in-memory read models rebuilt from the log", "records", records, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// consoleStatus is what the console's status panel shows.
func (n *Node) consoleStatus() console.Status {
	st := console.Status{Connections: n.gw.Connections(), Online: n.gw.OnlineUIDs()}
	ends, err := n.events.EndOffsets()
	if err != nil {
		return st
	}
	for _, t := range n.tracked {
		for p := int32(0); p < int32(len(ends)); p++ {
			st.Lag = append(st.Lag, console.LagEntry{Projection: t.name, Partition: p, Records: max(0, ends[p]-t.progress.Next(p))})
		}
	}
	return st
}

// online lists the connected devices of account: in a cluster, those of
// its online set that still have a route; on one node, this gateway's.
func (n *Node) online(ctx context.Context, account domain.AccountID) ([]domain.DeviceID, error) {
	if n.cfg.Redis == nil {
		return n.gw.Online(account), nil
	}
	uids, err := n.table.Online(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	routed, err := n.table.Lookup(ctx, uids)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	out := make([]domain.DeviceID, 0, len(routed))
	for uid := range routed {
		_, d := uid.Split()
		out = append(out, d)
	}
	return out, nil
}

// housekeeping trims the cache and forgets idempotency entries the store holds.
func (n *Node) housekeeping(ctx context.Context, c cache.Cache) {
	defer n.wg.Done()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if m, ok := c.(*cache.Memory); ok {
				m.Trim()
			}
			n.svc.SweepIdempotency(time.Minute)
		}
	}
}

// Addr is the gateway's listening address.
func (n *Node) Addr() string { return n.ln.Addr().String() }

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
		close(n.stop)
		if n.http != nil {
			_ = n.http.Close() // hijacked WebSockets are not affected; the gateway drains them
		} else if n.ln != nil {
			_ = n.ln.Close()
		}
		if n.gw != nil {
			errs = append(errs, n.gw.Shutdown(ctx))
		}
		if n.cancel != nil {
			n.cancel()
		}
		if n.router != nil {
			errs = append(errs, n.router.Close())
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

// tokenSecret returns the configured secret, or the one in the data dir,
// generating it on first start so that `parley token` can mint tokens the
// server accepts without any setup.
func tokenSecret(cfg Config) ([]byte, error) {
	if len(cfg.TokenSecret) > 0 {
		return cfg.TokenSecret, nil
	}
	return LoadOrCreateSecret(cfg.DataDir)
}

// SecretFile is the token secret's file name inside the data dir.
const SecretFile = "token.secret"

// LoadOrCreateSecret reads dataDir/token.secret, creating it if missing.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, SecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cannot read token secret: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data dir: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("cannot write token secret: %w", err)
	}
	return []byte(secret), nil
}
