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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/ws"
)

// Config is everything a node needs. Zero values take the embedded
// defaults: a data directory under ./parley-data, the broker in-process on
// a free loopback port, the gateway on 127.0.0.1:8080.
type Config struct {
	// DataDir holds the embedded broker's log and the generated token secret.
	DataDir string
	// Listen is the HTTP address of the gateway (WebSocket at /ws).
	Listen string
	// Kafka configures the event log. With no Brokers the node runs the
	// embedded broker.
	Kafka kafka.Config
	// EmbeddedBroker configures the embedded broker (its DataDir defaults
	// to DataDir/log).
	EmbeddedBroker kafka.EmbeddedConfig
	// TokenSecret signs client tokens. Empty: read DataDir/token.secret,
	// creating it with a random secret on first start.
	TokenSecret []byte
	// Gateway and API tune the WebSocket gateway and the operations.
	Gateway ws.Config
	API     api.Config
	// CatchUpTimeout bounds the rebuild of the read models at start. Default 10m.
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

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown sync.Once
	err      error
}

// Start builds the node, rebuilds the read models from the log, and starts
// serving. It returns once clients can connect.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg.setDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger}
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
	if n.tokens, err = auth.NewTokens(secret); err != nil {
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

	rm := api.ReadModels{
		Store: store.NewMemory(), StoreProgress: projections.NewProgress(),
		Cache: cache.NewMemory(cache.Retention), CacheProgress: projections.NewProgress(),
		GroupsProgress: projections.NewProgress(), ConversationsProgress: projections.NewProgress(),
	}
	groupModel := groups.NewMemory()
	convModel := conversations.NewMemory()
	rm.Groups, rm.Conversations = groupModel, convModel
	n.svc = api.New(cfg.API, n.events, rm)
	if n.gw, err = ws.New(cfg.Gateway, n.svc, n.tokens); err != nil {
		return nil, err
	}
	pushProgress := projections.NewProgress()

	wlog := watermill.NewSlogLoggerWithLevelMapping(n.log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	if n.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog); err != nil {
		return nil, err
	}
	epoch := n.events.Epoch()
	type proj struct {
		name     string
		p        projections.Projection
		progress projections.Tracker
	}
	all := []proj{
		{store.Name, store.NewProjection(rm.Store), rm.StoreProgress},
		{cache.Name, cache.NewProjection(rm.Cache, epoch, true), rm.CacheProgress},
		{groups.Name, groupModel, rm.GroupsProgress},
		{conversations.Name, convModel, rm.ConversationsProgress},
		{push.Name, push.NewProjection(n.gw, groups.At{Model: groupModel, Progress: rm.GroupsProgress}), pushProgress},
	}
	for _, p := range all {
		// In-memory read models are rebuilt from the start of the log at
		// every start, so they read without a consumer group.
		sub, err := n.events.NewSubscriber(kafka.SubscriberConfig{}, wlog)
		if err != nil {
			return nil, err
		}
		n.router.AddConsumerHandler(p.name, n.events.Topic(), sub, projections.Handler(p.name, p.p, epoch, p.progress, n.log))
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
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

	// Rebuild: serve only once every read model holds the whole log.
	ends, err := n.events.EndOffsets()
	if err != nil {
		return nil, err
	}
	catchCtx, catchCancel := context.WithTimeout(ctx, cfg.CatchUpTimeout)
	defer catchCancel()
	started := time.Now()
	for _, p := range all {
		if err := p.progress.WaitForAll(catchCtx, ends); err != nil {
			return nil, fmt.Errorf("cannot rebuild %s: %w", p.name, err)
		}
	}
	var records int64
	for _, e := range ends {
		records += e
	}
	n.log.Info("read models rebuilt from the log", "records", records, "took", time.Since(started).Round(time.Millisecond))

	n.wg.Add(1)
	go n.housekeeping(runCtx, rm.Cache.(*cache.Memory))

	if n.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", n.gw)
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	n.log.Info("parley serving", "ws", "ws://"+n.ln.Addr().String()+"/ws")
	return n, nil
}

// housekeeping trims the cache and forgets idempotency entries the store holds.
func (n *Node) housekeeping(ctx context.Context, c *cache.Memory) {
	defer n.wg.Done()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Trim()
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

// Shutdown stops accepting connections, closes every connection with
// reason shutting_down, stops the projections and the log. Idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdown.Do(func() {
		var errs []error
		if n.http != nil {
			_ = n.http.Close() // hijacked WebSockets are not affected; the gateway drains them
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
