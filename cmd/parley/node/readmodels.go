package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/keys"
	parleypebble "github.com/parley-chat/parley/infra/pebble"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/infra/routes"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/logout"
	"github.com/parley-chat/parley/projections/notify"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/push"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/store"
	"github.com/parley-chat/parley/projections/stream"
	"github.com/parley-chat/parley/transport/api"
	"github.com/parley-chat/parley/transport/wire"
	goredis "github.com/redis/go-redis/v9"
)

// stores are where a process keeps state: the embedded store of a single
// node, or PostgreSQL and Redis in scale-out; and the route table (in
// Redis, or in this process on a single node).
type stores struct {
	embedded *pebble.DB
	stalls   *parleypebble.Stalls // the embedded store's
	// filters report the embedded store's filters of held keys, by
	// projection.
	filters map[string]func(report func(kind string, loaded bool, bytes int64))
	pool    *pgxpool.Pool
	rdb     *goredis.Client
	prefix  string
	routes  routes.Table
}

// openStores opens the embedded store of a single node, or connects to
// PostgreSQL and Redis in scale-out.
func (n *Node) openStores(ctx context.Context) error {
	if n.cfg.Postgres == nil {
		if err := removeBackupScratch(n.cfg.DataDir); err != nil {
			return err
		}
		n.stores.stalls = &parleypebble.Stalls{}
		db, err := parleypebble.Open(parleypebble.Config{Dir: filepath.Join(n.cfg.DataDir, storeDir), CacheBytes: n.cfg.StoreCacheBytes,
			Logger: n.log, Stalls: n.stores.stalls})
		if err != nil {
			return err
		}
		n.stores.embedded = db
		n.closers = append(n.closers, db.Close)
		began := time.Now()
		moved, err := conversations.UpgradePebble(ctx, db)
		if err != nil {
			return fmt.Errorf("cannot upgrade the conversation index: %w", err)
		}
		if moved > 0 {
			n.log.Info("moved the conversation index to its new key layout", "keys", moved, "took", time.Since(began).Round(time.Millisecond))
		}
		n.stores.routes = routes.NewMemory()
		n.keys, err = keys.NewRing(keys.NewPebble(db), keys.Config{})
		return err
	}
	var err error
	if n.stores.pool, err = postgres.Open(ctx, *n.cfg.Postgres); err != nil {
		return err
	}
	n.closers = append(n.closers, func() error { n.stores.pool.Close(); return nil })
	if n.keys, err = keys.NewRing(keys.NewPostgres(n.stores.pool), keys.Config{}); err != nil {
		return err
	}
	redis.UseLogger(n.log)
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
	api api.ReadModels
	// members resolves a group's members for push, as of a message.
	members *groups.At
	// prev tells, on a single node, the message before each message; first
	// works it out, ahead of every other spec of the node's one reader.
	prev    push.Prev
	first   runner.Spec
	readers []runner.Reader
	run     []func(context.Context)
	// ends are the log's end offsets when the process started.
	ends map[int32]int64
	// embedded are the single node's durable specs, groups first;
	// memory are the specs of in-memory read models that start at the
	// log's end (push, the embedded cache, the console's stream).
	// finishReaders puts them in readers.
	embedded, memory []runner.Spec
}

// ProgressName is the name under which a projection's progress is kept in
// a log epoch: offsets restart at zero in a new epoch, and an old epoch's
// high offsets must not vouch for the new log.
func ProgressName(projection string, epoch uint8) string {
	return fmt.Sprintf("%s@e%d", projection, epoch)
}

// groupCacheTTL is how long a gateway trusts a group it read: a removal
// made on another gateway reaches it within this time (its own changes at
// once). groupCacheMembers bounds the members cached in all.
const (
	groupCacheTTL     = 2 * time.Second
	groupCacheMembers = 200_000
	// predecessorsRemembered: conversations whose latest msgid the single
	// node's reader remembers, between 1× and 2× this (about 100 bytes
	// each); it asks the index about the others.
	predecessorsRemembered = 1 << 16
)

// readModels builds the read models of this process. Every read model is
// durable — in the embedded store on a single node, in PostgreSQL and
// Redis in scale-out — and no process rebuilds one from the start of the
// log: a single node reads the log's tail after what its store holds, a
// projector resumes its consumer groups. Only push, the console's event
// stream and the single node's cache live in memory, from the log's end at
// start.
func (n *Node) readModels(ctx context.Context) (readModelSet, error) {
	if n.cfg.Postgres == nil {
		return n.embeddedReadModels(ctx)
	}
	return n.scaleOutReadModels(ctx)
}

// embeddedReadModels are a single node's: the history, groups and the
// conversation index in the embedded store, each committing its progress
// with its data, fed — with the in-memory models after them — by one reader
// of the log from the oldest of their progress.
func (n *Node) embeddedReadModels(ctx context.Context) (readModelSet, error) {
	db, epoch := n.stores.embedded, n.events.Epoch()
	var set readModelSet
	durable := func(name string) (*progress.Tracker, error) {
		tr, err := progress.New(ctx, progress.NewPebble(db, ProgressName(name, epoch)), progress.Config{Name: name})
		if err == nil {
			// Before the store closes (closers run in reverse, once the
			// reader stopped): the progress that batches of messages left
			// behind (PebbleMarks.CommitReplayable) is saved exactly.
			n.closers = append(n.closers, tr.Close, func() error {
				return progress.SaveMarks(db, ProgressName(name, epoch), tr, n.events.Partitions())
			})
		}
		return tr, err
	}
	gm := groups.NewPebble(db, ProgressName(groups.Name, epoch))
	st := store.NewPebble(db, ProgressName(store.Name, epoch))
	convs := conversations.NewPebble(db, ProgressName(conversations.Name, epoch))
	gcache := groups.NewCache(gm, groupCacheTTL, groupCacheMembers)
	gm.OnChange = gcache.Forget
	var err error
	set.api = api.ReadModels{Store: st, Groups: gcache, Conversations: convs, Mutes: notify.NewPebbleMutes(db)}
	if set.api.GroupsProgress, err = durable(groups.Name); err != nil {
		return set, err
	}
	if set.api.StoreProgress, err = durable(store.Name); err != nil {
		return set, err
	}
	if set.api.ConversationsProgress, err = durable(conversations.Name); err != nil {
		return set, err
	}
	n.drain = []api.Progress{set.api.GroupsProgress, set.api.StoreProgress, set.api.ConversationsProgress}
	// The cache keeps each message as a sync reply carries it, so that a
	// reply from the cache appends encodings instead of encoding.
	mem := cache.NewBoundedMemory(CacheRetention(n.cfg.Retention.Keep), n.cfg.CacheBytes).KeepEncoded(wire.EncodeMessage)
	set.api.Cache = mem
	set.run = append(set.run, func(ctx context.Context) { mem.RunTrim(ctx, 30*time.Second) })
	// The filters of keys the store holds, read in the background: until
	// each is loaded, its lookups read the store, as they always may.
	n.stores.filters = map[string]func(func(string, bool, int64)){store.Name: st.Filters, conversations.Name: convs.Filters}
	set.run = append(set.run, n.keepFilter(store.Name, st.KeepFilter), n.keepFilter(conversations.Name, convs.KeepFilter))
	set.members = &groups.At{Model: gm, Progress: set.api.GroupsProgress}
	preds := conversations.NewPredecessors(convs.LatestPrimed, predecessorsRemembered)
	set.prev = preds.Before
	acked, err := n.ackedTracker(ctx, db)
	if err != nil {
		return set, err
	}
	if set.ends, err = n.events.EndOffsets(ctx); err != nil {
		return set, err
	}
	if err := n.checkLog(set.ends, acked, set.api.GroupsProgress, set.api.StoreProgress, set.api.ConversationsProgress); err != nil {
		return set, err
	}
	set.api.CacheProgress = fromEnd(set.ends)
	set.memory = []runner.Spec{
		{Name: cache.Name, Projection: cache.NewProjection(mem, epoch, false).WithPrev(preds.Before), Tracker: set.api.CacheProgress},
		{Name: stream.Name, Projection: n.recent, Tracker: fromEnd(set.ends)},
	}
	// Every record the reader reads, from the oldest progress on.
	set.first = runner.Spec{Name: conversations.PredecessorsName, Projection: preds, Tracker: progress.NewMemory()}
	set.embedded = []runner.Spec{
		{Name: groups.Name, Projection: gm, Tracker: set.api.GroupsProgress, Rebuild: true},
		{Name: store.Name, Projection: st, Tracker: set.api.StoreProgress, Rebuild: true},
		{Name: conversations.Name, Projection: convs, Tracker: set.api.ConversationsProgress, Rebuild: true},
	}
	return set, nil
}

// finishReaders adds the readers of the single node's models, or of the
// console's stream in scale-out. A single node reads the log once: the
// messages' predecessors first, groups (push reads them), then push, so that it waits for no disk write,
// then the cache, the history, the conversation index and the stream.
func (n *Node) finishReaders(set *readModelSet) error {
	if len(set.embedded) > 0 {
		from, err := n.readFrom(set.embedded, set.ends)
		if err != nil {
			return err
		}
		specs := append([]runner.Spec{set.first, set.embedded[0]}, set.memory...)
		specs = append(specs, set.embedded[1:]...)
		set.readers = append(set.readers, runner.Reader{Name: "parley.projections.embedded", Topic: n.events.Topic(),
			Source: n.followFrom(from), Specs: specs})
		return nil
	}
	if len(set.memory) > 0 {
		from := map[int32]int64{}
		for p := int32(0); p < n.events.Partitions(); p++ {
			from[p] = set.ends[p]
		}
		set.readers = append(set.readers, runner.Reader{Name: "parley.projections.memory", Topic: n.events.Topic(),
			Source: n.followFrom(from), Specs: set.memory})
	}
	return nil
}

// followFrom reads the conversation topic from from on, following it: in
// process when this node runs the embedded broker (no loopback fetches,
// see kafka.Embedded.RangeSource), over the Kafka protocol otherwise.
func (n *Node) followFrom(from map[int32]int64) runner.Source {
	if n.broker != nil {
		return n.broker.RangeSource(n.events.Topic(), from, nil)
	}
	return n.events.RangeSource(from, nil)
}

// fromEnd is the tracker of an in-memory model that starts at the log's
// end: every record before ends counts as applied.
func fromEnd(ends map[int32]int64) *progress.Tracker {
	t := progress.NewMemory()
	for p, end := range ends {
		if end > 0 {
			t.Advance(p, end-1)
		}
	}
	return t
}

// readFrom is where one reader of specs starts in each partition: at the
// oldest of their progress, or at the log's start if the log no longer
// holds that — then records the read models never applied are gone, and
// the node says so — and never after the log's end at start (a repair
// starts on a log shorter than the progress).
func (n *Node) readFrom(specs []runner.Spec, ends map[int32]int64) (map[int32]int64, error) {
	start, err := n.events.StartOffsets()
	if err != nil {
		return nil, err
	}
	from := map[int32]int64{}
	for p := int32(0); p < n.events.Partitions(); p++ {
		next := int64(-1)
		for _, s := range specs {
			if v := s.Tracker.Next(p); next < 0 || v < next {
				next = v
			}
		}
		next = min(next, ends[p])
		if next < start[p] {
			n.log.Error("the log no longer holds records the read models have not applied: they are skipped",
				"partition", p, "applied_up_to", next, "log_starts_at", start[p])
			next = start[p]
			// Their progress moves past what is gone, or a start on a
			// log with nothing left after it would wait for it forever.
			for _, s := range specs {
				if s.Tracker.Next(p) < next {
					s.Tracker.Advance(p, next-1)
				}
			}
		}
		from[p] = next
	}
	return from, nil
}

// scaleOutReadModels are those of a scale-out process: the history,
// groups and the conversation index in PostgreSQL and the cache in Redis,
// each fed on projectors by a consumer group of its own; gateways read
// them, and their progress, in PostgreSQL and Redis.
func (n *Node) scaleOutReadModels(ctx context.Context) (readModelSet, error) {
	var set readModelSet
	durable, err := Durable(ctx, n.stores.pool, n.stores.rdb, n.stores.prefix, n.events.Epoch(), false, n.cfg.Retention.Keep, n.log)
	if err != nil {
		return set, err
	}
	var gm *groups.Postgres
	for _, d := range durable {
		n.closers = append(n.closers, d.Close)
		switch m := d.model.(type) {
		case store.Store:
			set.api.Store, set.api.StoreProgress = m, d.Tracker
		case cache.Cache:
			set.api.Cache, set.api.CacheProgress = m, d.Tracker
		case *groups.Postgres:
			gm, set.api.GroupsProgress = m, d.Tracker
		case conversations.Index:
			set.api.Conversations, set.api.ConversationsProgress = m, d.Tracker
		}
		if n.cfg.Roles.Projector {
			set.readers = append(set.readers, runner.Reader{Name: d.Name, Topic: n.events.Topic(),
				Source: n.events.GroupSource(d.Name), Specs: []runner.Spec{d.Spec}})
		}
	}
	set.api.Groups = groups.NewCache(gm, groupCacheTTL, groupCacheMembers)
	set.api.Mutes = notify.NewPostgresMutes(n.stores.pool)
	set.members = &groups.At{Model: gm, Progress: set.api.GroupsProgress}
	if set.ends, err = n.events.EndOffsets(ctx); err != nil {
		return set, err
	}
	var held []interface{ Next(partition int32) int64 }
	for _, d := range durable {
		held = append(held, d.Tracker)
	}
	if err := n.checkLog(set.ends, held...); err != nil {
		return set, err
	}
	if err := n.checkStart(durable); err != nil {
		return set, err
	}
	if n.cfg.Console {
		set.memory = []runner.Spec{{Name: stream.Name, Projection: n.recent, Tracker: fromEnd(set.ends)}}
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

// Model is the read model itself (a store.Store, a cache.Cache, ...).
func (d DurableModel) Model() any { return d.model }

// Durable opens the durable read models of scale-out — the history,
// groups and the conversation index in PostgreSQL (with a pool), the cache
// in Redis (with a client) — with their progress, named per log epoch
// (ProgressName). The projector and `parley replay` build them here, so
// that both write the same progress. fromLogStart says the cache
// projection reads from the start of the log in this run (see
// cache.NewProjection). keep is the history retention (0: forever),
// which the cache keeps to as well (CacheRetention). log reports a cache
// that lost writes.
func Durable(ctx context.Context, pool *pgxpool.Pool, rdb *goredis.Client, prefix string, epoch uint8, fromLogStart bool, keep time.Duration, log *slog.Logger) (_ []DurableModel, err error) {
	var out []DurableModel
	defer func() {
		if err != nil {
			for _, d := range out {
				_ = d.Close()
			}
		}
	}()
	add := func(name string, backend progress.Backend, cfg progress.Config, model any, projection func() runner.Spec) error {
		cfg.Name = name
		tr, err := progress.New(ctx, backend, cfg)
		if err != nil {
			return err
		}
		spec := projection()
		spec.Name, spec.Tracker = name, tr
		out = append(out, DurableModel{Spec: spec, model: model, Close: tr.Close})
		return nil
	}
	if pool != nil {
		// Partitions apply one batch at a time each; group commit lets
		// their concurrent writes share one round trip and commit (about
		// twice the throughput, see BenchmarkProjectionWrites).
		st := store.NewGroupCommit(store.NewPostgres(pool), 0)
		gm := groups.NewPostgres(pool, ProgressName(groups.Name, epoch))
		convs := conversations.NewPostgres(pool, ProgressName(conversations.Name, epoch))
		for _, m := range []struct {
			name       string
			backend    progress.Backend
			model      any
			projection runner.Spec
		}{
			{store.Name, progress.NewPostgres(pool, ProgressName(store.Name, epoch)), st, runner.Spec{Projection: store.NewProjection(st)}},
			// Groups commits its progress with its changes, and its
			// tracker saves that of the batches without any (most).
			{groups.Name, progress.NewPostgres(pool, ProgressName(groups.Name, epoch)), gm, runner.Spec{Projection: gm}},
			// The index writes its progress in its own transactions.
			{conversations.Name, progress.Committed(progress.NewPostgres(pool, ProgressName(conversations.Name, epoch))), convs, runner.Spec{Projection: convs}},
		} {
			if err := add(m.name, m.backend, progress.Config{FlushInterval: 5 * time.Millisecond}, m.model, func() runner.Spec { return m.projection }); err != nil {
				return nil, err
			}
		}
	}
	if rdb != nil {
		c, err := cache.NewRedis(rdb, cache.RedisConfig{Prefix: prefix, Retention: CacheRetention(keep)})
		if err != nil {
			return nil, err
		}
		// A failover may lose the cache's last writes with the progress
		// written after them: the journal tells what to stop vouching for.
		journal := cache.NewJournal(0)
		projection := cache.NewProjection(c, epoch, fromLogStart).WithJournal(journal)
		backend := progress.NewRedis(rdb, fmt.Sprintf("%se%d:progress:cache", prefix, epoch)).
			OnLoss(func(ctx context.Context, lost map[int32]int64) error {
				log.Warn("Redis may have lost the cache's last writes (a failover, a restart or a flush); the cache stops vouching for what they changed",
					"partitions_from_offsets", fmt.Sprint(lost))
				projection.Doubt()
				return c.Repair(ctx, journal, lost)
			})
		// Rewrite every quarter second: it is also how a loss is noticed
		// when no new record comes.
		cfg := progress.Config{Rewrite: true, RefreshInterval: 250 * time.Millisecond}
		if err := add(cache.Name, backend, cfg, c, func() runner.Spec {
			return runner.Spec{Projection: projection}
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pushReader is the push projection of this process, if it runs one: a
// single node pushes to its own gateway, from its one reader; in
// scale-out the projectors route every push through the route table, as
// one consumer group.
func (n *Node) pushReader(set *readModelSet) *runner.Reader {
	if n.cfg.Redis == nil {
		pp := push.NewProjection(n.gw, set.members).WithPrev(set.prev)
		set.memory = append([]runner.Spec{{Name: push.Name, Projection: pp, Tracker: fromEnd(set.ends)}}, set.memory...)
		return nil
	}
	if !n.cfg.Roles.Projector {
		return nil
	}
	// A new push group starts at the beginning of the log, not its end: a
	// group that started at the end would skip the records appended while
	// it joined. Devices ignore pushes of messages they hold.
	return &runner.Reader{Name: push.Name, Topic: n.events.Topic(), Source: n.events.GroupSource(push.Name),
		Specs: []runner.Spec{{Name: push.Name, Projection: push.NewProjection(n.clu.router, set.members), Tracker: progress.NewMemory()}}}
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

// keepFilter runs a read model's KeepFilter until ctx ends: while a
// filter is not loaded, that read model's lookups read the store, as they
// always may; one that stops for good is logged as it stops.
func (n *Node) keepFilter(projection string, keep func(context.Context, func(string, error))) func(context.Context) {
	return func(ctx context.Context) {
		keep(ctx, func(kind string, err error) {
			n.log.Warn("a filter of the embedded store is off until the next start; its lookups read the store",
				"projection", projection, "kind", kind, "err", err)
		})
	}
}
