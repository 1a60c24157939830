package node

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/logout"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/api"
	goredis "github.com/redis/go-redis/v9"
)

// stores are the services a scale-out process keeps state in, and the
// route table (in Redis, or in this process on a single node).
type stores struct {
	pool   *pgxpool.Pool
	rdb    *goredis.Client
	prefix string
	routes routes.Table
}

// openStores connects to PostgreSQL and Redis in scale-out; a single node
// keeps its routes in memory.
func (n *Node) openStores(ctx context.Context) error {
	if n.cfg.Postgres == nil {
		n.stores.routes = routes.NewMemory()
		return nil
	}
	var err error
	if n.stores.pool, err = postgres.Open(ctx, *n.cfg.Postgres); err != nil {
		return err
	}
	n.closers = append(n.closers, func() error { n.stores.pool.Close(); return nil })
	if n.stores.rdb, err = redis.Open(ctx, *n.cfg.Redis); err != nil {
		return err
	}
	n.closers = append(n.closers, n.stores.rdb.Close)
	n.stores.prefix = n.cfg.Redis.Prefix
	if n.stores.prefix == "" {
		n.stores.prefix = redis.DefaultPrefix
	}
	var dir routes.Directory = routes.NoDirectory{}
	if n.cfg.DirectoryURL != "" {
		if dir, err = routes.NewHTTPDirectory(n.cfg.DirectoryURL); err != nil {
			return err
		}
	}
	n.stores.routes = routes.NewRedis(n.stores.rdb, n.stores.prefix, dir)
	return nil
}

// readModelSet is what readModels builds: the models the operations read,
// the readers of the projections this process runs, and the background
// work the models own.
type readModelSet struct {
	api     api.ReadModels
	groups  *groups.Memory
	readers []runner.Reader
	run     []func(context.Context)
}

// readModels builds the read models of this process. Groups, the
// conversation list and the console's event stream are in memory in every
// process, rebuilt from the log at start by one shared reader; the store
// and the cache are in memory too on a single node (in that reader), and
// in PostgreSQL and Redis in scale-out, fed by their own consumer groups
// on projectors.
func (n *Node) readModels(ctx context.Context) (readModelSet, error) {
	var set readModelSet
	set.groups = groups.NewMemory()
	convs := conversations.NewMemory()
	set.api = api.ReadModels{
		Groups: set.groups, GroupsProgress: progress.NewMemory(),
		Conversations: convs, ConversationsProgress: progress.NewMemory(),
	}
	memory := []runner.Spec{
		{Name: groups.Name, Projection: set.groups, Tracker: set.api.GroupsProgress, Rebuild: true},
		{Name: conversations.Name, Projection: convs, Tracker: set.api.ConversationsProgress, Rebuild: true},
		{Name: stream.Name, Projection: n.recent, Tracker: progress.NewMemory(), Rebuild: true},
	}
	if n.cfg.Postgres == nil {
		mem := cache.NewMemory(cache.Retention)
		set.api.Store, set.api.StoreProgress = store.NewMemory(), progress.NewMemory()
		set.api.Cache, set.api.CacheProgress = mem, progress.NewMemory()
		memory = append(memory,
			runner.Spec{Name: store.Name, Projection: store.NewProjection(set.api.Store), Tracker: set.api.StoreProgress, Rebuild: true},
			runner.Spec{Name: cache.Name, Projection: cache.NewProjection(mem, n.events.Epoch(), true), Tracker: set.api.CacheProgress, Rebuild: true})
		set.run = append(set.run, func(ctx context.Context) { mem.RunTrim(ctx, 30*time.Second) })
	}
	start, err := n.events.StartOffsets()
	if err != nil {
		return set, err
	}
	set.readers = append(set.readers, runner.Reader{Name: "parley.projections.memory", Topic: n.events.Topic(),
		Source: n.events.RangeSource(start, nil), Specs: memory})
	if n.cfg.Postgres == nil {
		return set, nil
	}
	durable, err := Durable(ctx, n.stores.pool, n.stores.rdb, n.stores.prefix, n.events.Epoch(), false)
	if err != nil {
		return set, err
	}
	for _, d := range durable {
		n.closers = append(n.closers, d.Close)
	}
	set.api.Store, set.api.StoreProgress = durable[0].model.(store.Store), durable[0].Tracker
	set.api.Cache, set.api.CacheProgress = durable[1].model.(cache.Cache), durable[1].Tracker
	if n.cfg.Roles.Projector {
		for _, d := range durable {
			set.readers = append(set.readers, runner.Reader{Name: d.Name, Topic: n.events.Topic(),
				Source: n.events.GroupSource(d.Name), Specs: []runner.Spec{d.Spec}})
		}
	}
	return set, nil
}

// DurableModel is a read model kept in PostgreSQL or Redis, with the
// projection that feeds it and its durable progress.
type DurableModel struct {
	runner.Spec
	model any
	// Close writes what progress is unwritten.
	Close func() error
}

// Durable opens the durable read models of scale-out — the store in
// PostgreSQL (with a pool) and the cache in Redis (with a client) — with
// their progress, kept per log epoch: offsets restart at zero in a new
// epoch, and an old epoch's high offsets must not vouch for the new log.
// The projector and `parley replay` build them here, so that both write
// the same progress. fromLogStart says the cache projection reads from the
// start of the log in this run (see cache.NewProjection).
func Durable(ctx context.Context, pool *pgxpool.Pool, rdb *goredis.Client, prefix string, epoch uint8, fromLogStart bool) (_ []DurableModel, err error) {
	var out []DurableModel
	defer func() {
		if err != nil {
			for _, d := range out {
				_ = d.Close()
			}
		}
	}()
	if pool != nil {
		tr, err := progress.New(ctx, progress.NewPostgres(pool, fmt.Sprintf("%s@e%d", store.Name, epoch)),
			progress.Config{Name: store.Name, FlushInterval: 5 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		// Partitions apply one batch at a time each; group commit lets
		// their concurrent writes share one round trip and commit (about
		// twice the throughput, see BenchmarkProjectionWrites).
		st := store.NewGroupCommit(store.NewPostgres(pool), 0)
		out = append(out, DurableModel{Spec: runner.Spec{Name: store.Name, Projection: store.NewProjection(st), Tracker: tr}, model: st, Close: tr.Close})
	}
	if rdb != nil {
		c, err := cache.NewRedis(rdb, cache.RedisConfig{Prefix: prefix})
		if err != nil {
			return nil, err
		}
		tr, err := progress.New(ctx, progress.NewRedis(rdb, fmt.Sprintf("%se%d:progress:cache", prefix, epoch)),
			progress.Config{Name: cache.Name, Rewrite: true})
		if err != nil {
			return nil, err
		}
		out = append(out, DurableModel{Spec: runner.Spec{Name: cache.Name, Projection: cache.NewProjection(c, epoch, fromLogStart), Tracker: tr}, model: c, Close: tr.Close})
	}
	return out, nil
}

// pushReader is the push projection of this process, if it runs one: a
// single node pushes to its own gateway from the shared in-memory reader;
// in scale-out the projectors route every push through the route table,
// as one consumer group.
func (n *Node) pushReader(set *readModelSet) *runner.Reader {
	members := groups.At{Model: set.groups, Progress: set.api.GroupsProgress}
	if n.cfg.Redis == nil {
		// After the models it reads, in the shared reader.
		mem := &set.readers[0]
		mem.Specs = append(mem.Specs, runner.Spec{Name: push.Name, Projection: push.NewProjection(n.gw, members), Tracker: progress.NewMemory(), Rebuild: true})
		return nil
	}
	if !n.cfg.Roles.Projector {
		return nil
	}
	// A new push group starts at the beginning of the log, not its end: a
	// group that started at the end would skip the records appended while
	// it joined. Devices ignore pushes of messages they hold.
	return &runner.Reader{Name: push.Name, Topic: n.events.Topic(), Source: n.events.GroupSource(push.Name),
		Specs: []runner.Spec{{Name: push.Name, Projection: push.NewProjection(n.clu.router, members), Tracker: progress.NewMemory()}}}
}

// logoutReader is the gateway's reader of the users topic: every gateway
// reads every logout, without a consumer group, from the end of the topic
// at start (its connections are all newer).
func (n *Node) logoutReader(ctx context.Context) (runner.Reader, error) {
	sub, err := n.events.NewSubscriber(kafka.SubscriberConfig{FromNewest: true}, kafka.NewWatermillLogger(n.log))
	if err != nil {
		return runner.Reader{}, err
	}
	n.closers = append(n.closers, sub.Close)
	src, err := kafka.WatermillSource(ctx, sub, n.events.UsersTopic())
	if err != nil {
		return runner.Reader{}, err
	}
	return runner.Reader{Name: logout.Name, Topic: n.events.UsersTopic(), Source: src,
		Specs: []runner.Spec{{Name: logout.Name, Projection: logout.NewProjection(n.gw), Tracker: progress.NewMemory()}}}, nil
}
