package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/cmd/parley/node"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/keys"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/conversations"
	"github.com/parley-chat/parley/projections/groups"
	"github.com/parley-chat/parley/projections/progress"
	"github.com/parley-chat/parley/projections/retention"
	"github.com/parley-chat/parley/projections/runner"
	"github.com/parley-chat/parley/projections/store"
	goredis "github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// replayConfig is what `parley replay` was asked for.
type replayConfig struct {
	kafka    kafka.Config
	postgres postgres.Config
	redis    redis.Config
	// projections are the names of the read models to rebuild.
	projections map[string]bool
	// keySchema is the schema of the data keys that open the log's sealed
	// bodies: the cluster's, not the one rebuilt (which may be empty).
	keySchema   string
	from        string
	progressOut io.Writer
	terminal    bool
	// keep is the history retention (--retention) the servers run with:
	// the replayed cache keeps no longer, and the history loses again,
	// before the replay ends, what the retention removes.
	keep time.Duration
	// now is the retention's clock: time.Now unless a test sets it.
	now func() time.Time
}

func replay(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseReplay(args, stdout)
	if err != nil {
		return err
	}
	cfg.progressOut = stderr
	if fd, ok := stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		cfg.terminal = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, complete, err := runReplay(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d events\n", n)
	if complete {
		fmt.Fprintln(stdout, "source: the log from its first record: the read models hold the whole history")
	} else {
		fmt.Fprintln(stdout, "source: the log from where it starts now (a later epoch, a trimmed log, or --from); "+
			"what the read models held before that stays, and was not rebuilt")
	}
	return nil
}

func parseReplay(args []string, stdout io.Writer) (replayConfig, error) {
	f := newFlags("replay", stdout)
	brokers := f.string("kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers")
	kafkaSec := defineKafkaSecurity(f)
	topic := f.string("topic", events.DefaultConversationTopic, "conversation topic")
	partitions := f.int("partitions", events.DefaultPartitions, "partitions of the conversation topic, 1..10000 (checked against the topic)")
	epoch := f.int("log-epoch", 1, fmt.Sprintf("log epoch of msgids (1..%d), the servers'", events.MaxEpoch))
	which := f.string("projection", "all", "store, cache, groups, conversations or all")
	from := f.string("from", "earliest", "earliest, or an RFC 3339 time to replay from")
	pgDSN := f.secret("postgres-dsn", "PostgreSQL of the store, groups and index (may hold a password); required for store, groups, conversations and all")
	pgSchema := f.string("postgres-schema", postgres.DefaultSchema, "PostgreSQL schema")
	rds := defineRedis(f, "Redis host:port of the cache; required for cache and all")
	keep := f.duration("retention", 0, "the servers' history retention: what it removes is removed again from the replayed store and cache; 0 keeps everything")
	keySchema := f.string("key-schema", "", "PostgreSQL schema of the cluster's data keys, which open the log's sealed bodies; empty means --postgres-schema")
	if err := f.parse(args); err != nil {
		return replayConfig{}, err
	}
	cfg := replayConfig{
		kafka:     kafka.Config{Topic: *topic, Partitions: int32(*partitions), Epoch: uint8(*epoch), Security: kafkaSec.security()},
		postgres:  postgres.Config{DSN: *pgDSN, Schema: *pgSchema},
		redis:     rds.config(),
		from:      *from,
		keep:      *keep,
		keySchema: *keySchema,
	}
	if cfg.keySchema == "" {
		cfg.keySchema = *pgSchema
	}
	f.check("retention", *keep == 0 || *keep >= time.Minute, "want 0 (forever) or at least 1m")
	var err error
	cfg.kafka.Brokers, err = brokerList(*brokers)
	f.checkErr("kafka-brokers", err)
	kafkaSec.check(f)
	f.check("topic", validTopic(*topic), "want 1..249 letters, digits, '.', '_' or '-'")
	f.check("partitions", *partitions >= 1 && *partitions <= 10000, "want 1..10000")
	f.check("log-epoch", *epoch >= 1 && *epoch <= events.MaxEpoch, "want 1..%d", events.MaxEpoch)
	names := map[string]string{"store": store.Name, "cache": cache.Name, "groups": groups.Name, "conversations": conversations.Name}
	cfg.projections = map[string]bool{}
	switch name, ok := names[*which]; {
	case ok:
		cfg.projections[name] = true
	case *which == "all":
		for _, n := range names {
			cfg.projections[n] = true
		}
	default:
		f.check("projection", false, "want store, cache, groups, conversations or all")
	}
	needsPG := cfg.projections[store.Name] || cfg.projections[groups.Name] || cfg.projections[conversations.Name]
	_, err = startAt(*from, false)
	f.checkErr("from", err)
	if *pgDSN != "" {
		_, err := pgxpool.ParseConfig(*pgDSN)
		f.check("postgres-dsn", err == nil, "cannot parse: want postgres://user:password@host:5432/db?... or key=value pairs")
	}
	f.check("postgres-schema", postgres.ValidSchema(*pgSchema), "want lowercase letters, digits and '_', at most 63 bytes, not starting with a digit")
	rds.check(f)
	f.check("key-schema", postgres.ValidSchema(cfg.keySchema), "want lowercase letters, digits and '_', at most 63 bytes, not starting with a digit")
	if needsPG && *pgDSN == "" {
		f.fail(fmt.Errorf("replaying the store, groups or the conversation index needs %s", f.name("postgres-dsn")))
	} else if *pgDSN == "" {
		f.fail(fmt.Errorf("replaying needs %s: the data keys that open the log's bodies are there", f.name("postgres-dsn")))
	}
	if cfg.projections[cache.Name] && *rds.addr == "" {
		f.fail(fmt.Errorf("replaying the cache needs %s", f.name("redis-addr")))
	}
	return cfg, f.err()
}

// runReplay rebuilds the chosen read models from the log: it reads every
// partition from the start (or a time) to the end it finds when it begins,
// applies each record with the same idempotent projection code the
// projector runs, then records the progress it made. The cluster may keep
// serving meanwhile: writes that race with the live projector are
// idempotent. complete says the range was the whole history: the first
// epoch's log from its first record.
func runReplay(ctx context.Context, cfg replayConfig) (applied int64, complete bool, err error) {
	l, err := kafka.Open(cfg.kafka)
	if err != nil {
		return 0, false, err
	}
	defer l.Close()
	epoch := l.Epoch()
	from, to, err := replayRange(l, cfg.from)
	if err != nil {
		return 0, false, err
	}
	fromLogStart := cfg.from == "earliest"
	complete = fromLogStart && epoch == 1
	for _, off := range from {
		complete = complete && off == 0
	}

	var pool *pgxpool.Pool
	var rdb *goredis.Client
	if cfg.projections[store.Name] || cfg.projections[groups.Name] || cfg.projections[conversations.Name] {
		if pool, err = postgres.Open(ctx, cfg.postgres); err != nil {
			return 0, false, err
		}
		defer pool.Close()
	}
	// The keys are read where the cluster keeps them: a body whose key is
	// destroyed is rebuilt as a tombstone, so an erasure survives a replay
	// into empty tables.
	keyPool := pool
	if pool == nil || cfg.keySchema != cfg.postgres.Schema {
		kc := cfg.postgres
		kc.Schema = cfg.keySchema
		if keyPool, err = postgres.Open(ctx, kc); err != nil {
			return 0, false, err
		}
		defer keyPool.Close()
	}
	ring, err := keys.NewRing(keys.NewPostgres(keyPool), keys.Config{})
	if err != nil {
		return 0, false, err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	guard := &keyGuard{Ring: ring, schema: cfg.keySchema, stop: stop, anyKey: func(ctx context.Context) (bool, error) {
		var have bool
		err := keyPool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM data_keys)`).Scan(&have)
		return have, err
	}}
	if cfg.projections[cache.Name] {
		if rdb, err = redis.Open(ctx, cfg.redis); err != nil {
			return 0, false, err
		}
		defer rdb.Close()
	}
	// The same read models, projections and progress keys as a projector.
	warn := slog.New(slog.NewTextHandler(cfg.progressOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
	durable, err := node.Durable(ctx, pool, rdb, cfg.redis.Prefix, epoch, fromLogStart, cfg.keep, warn)
	if err != nil {
		return 0, false, err
	}
	var specs []runner.Spec
	var chosen []node.DurableModel
	for _, d := range durable {
		if cfg.projections[d.Name] {
			chosen = append(chosen, d)
			spec := d.Spec
			spec.Tracker = progress.NewMemory() // this run's own: replay applies every record of the range
			specs = append(specs, spec)
		} else {
			_ = d.Close()
		}
	}

	var total int64
	for p, end := range to {
		if end > from[p] {
			total += end - from[p]
		}
	}
	here := specs[len(specs)-1].Tracker
	done := func() (n int64, pos map[int32]int64) {
		pos = map[int32]int64{}
		for p, end := range to {
			pos[p] = max(from[p], min(end, here.Next(p)))
			n += pos[p] - from[p]
		}
		return n, pos
	}
	stopProgress := showProgress(cfg, total, done, to)
	r := runner.New(runner.Config{Epoch: epoch, Keys: guard, Logger: warn},
		runner.Reader{Name: "replay", Topic: l.Topic(), Source: l.RangeSource(from, to), Specs: specs})
	err = r.Run(ctx)
	stopProgress()
	applied, _ = done()
	if cause := context.Cause(ctx); errors.Is(cause, errNoKeys) {
		return applied, complete, cause
	}
	if err != nil {
		return applied, complete, err
	}
	if ctx.Err() != nil && applied < total {
		// The runner takes an ended context for a stop, not a failure:
		// the range was not read to its end, so no progress is recorded.
		return applied, complete, fmt.Errorf("%w after %d of %d events (%w): the read models' progress is unchanged; run the replay again",
			errInterrupted, applied, total, context.Cause(ctx))
	}
	// Everything below the end is applied: say so, for readers waiting on it.
	for _, d := range chosen {
		for p, end := range to {
			if end > 0 {
				d.Tracker.Advance(p, end-1)
			}
		}
		if err := d.Close(); err != nil {
			return applied, complete, err
		}
	}
	return applied, complete, removeExpired(ctx, cfg, chosen)
}

// errInterrupted is a replay stopped (a signal) before the end of its range.
var errInterrupted = errors.New("interrupted")

// errNoKeys ends a replay whose key schema holds no data key at all.
var errNoKeys = errors.New("holds no data keys")

// keyGuard is the replay's key store. A body whose key is not there is
// rebuilt as a tombstone (its account was erased) — unless the key schema
// holds no key at all: then --key-schema names the wrong schema, and every
// sealed body would be rebuilt as erased, so the replay ends instead. A
// log written before bodies were sealed asks for no key and replays with
// an empty key schema.
type keyGuard struct {
	*keys.Ring
	schema string
	stop   context.CancelCauseFunc
	anyKey func(context.Context) (bool, error)

	mu   sync.Mutex
	seen bool // a key exists in the schema
}

// Key implements events.Keys.
func (g *keyGuard) Key(ctx context.Context, id string) (events.DataKey, error) {
	k, err := g.Ring.Key(ctx, id)
	if !errors.Is(err, events.ErrKeyDestroyed) {
		return k, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.seen {
		have, qerr := g.anyKey(ctx)
		if qerr != nil {
			return events.DataKey{}, fmt.Errorf("cannot read the data keys in schema %s: %w", g.schema, qerr)
		}
		if !have {
			cause := fmt.Errorf("schema %s %w, so every sealed body would be rebuilt as erased: "+
				"pass --key-schema with the schema of the cluster that wrote the log", g.schema, errNoKeys)
			g.stop(cause)
			return events.DataKey{}, cause
		}
		g.seen = true
	}
	return k, err
}

// removeExpired runs the history retention once over the replayed store
// (and cache): a replay into a store without floors (a new schema) holds
// again what the retention had removed, until this run. A store that kept
// its floors skipped those messages already.
func removeExpired(ctx context.Context, cfg replayConfig, chosen []node.DurableModel) error {
	if cfg.keep == 0 {
		return nil
	}
	var st store.Store
	var c retention.Cache
	for _, d := range chosen {
		switch m := d.Model().(type) {
		case store.Store:
			st = m
		case cache.Cache:
			c = m
		}
	}
	if st == nil {
		return nil // the cache alone keeps to the retention by itself
	}
	job, err := retention.New(st, c, retention.Config{Keep: cfg.keep, Now: cfg.now})
	if err != nil {
		return err
	}
	removed, _, err := job.RunOnce(ctx)
	if err != nil {
		return fmt.Errorf("cannot remove the history older than the retention: %w", err)
	}
	fmt.Fprintf(cfg.progressOut, "replay: removed %d messages older than the retention (%v)\n", removed, cfg.keep)
	return nil
}

// replayRange is the range of the log to replay: from the start of the
// retained log or from the records at or after a time, to the end as it is
// now.
func replayRange(l *kafka.Log, since string) (from, to map[int32]int64, err error) {
	if to, err = l.EndOffsets(context.Background()); err != nil {
		return nil, nil, err
	}
	if since == "earliest" {
		from, err = l.StartOffsets()
		return from, to, err
	}
	at, err := time.Parse(time.RFC3339, since)
	if err != nil {
		return nil, nil, fmt.Errorf("--from %q: want earliest or an RFC 3339 time", since)
	}
	from, err = l.OffsetsAt(at)
	return from, to, err
}

// showProgress draws a bar on a terminal, or writes a plain line every
// second otherwise: events done, events per second, ETA and where each
// partition stands. It returns the function that stops it.
func showProgress(cfg replayConfig, total int64, done func() (int64, map[int32]int64), to map[int32]int64) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	started := time.Now()
	var bar *progressbar.ProgressBar
	if cfg.terminal {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(cfg.progressOut), progressbar.OptionSetDescription("replay"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
	}
	line := func() {
		n, pos := done()
		secs := time.Since(started).Seconds()
		rate := float64(n) / max(secs, 0.001)
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(total-n)/rate) * time.Second).Round(time.Second).String()
		}
		parts := make([]string, 0, len(to))
		keys := make([]int, 0, len(to))
		for p := range to {
			keys = append(keys, int(p))
		}
		sort.Ints(keys)
		for _, p := range keys {
			parts = append(parts, fmt.Sprintf("%d:%d/%d", p, pos[int32(p)], to[int32(p)]))
		}
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(n) / float64(total)
		}
		fmt.Fprintf(cfg.progressOut, "replay: %d/%d events (%.1f%%), %.0f events/s, ETA %s, partitions %s\n", n, total, pct, rate, eta, strings.Join(parts, " "))
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		if bar != nil {
			t.Reset(100 * time.Millisecond)
		}
		defer t.Stop()
		for {
			select {
			case <-stop:
				if bar != nil {
					n, _ := done()
					_ = bar.Set64(n)
					_ = bar.Finish()
					fmt.Fprintln(cfg.progressOut)
				} else {
					line()
				}
				return
			case <-t.C:
				if bar != nil {
					n, _ := done()
					_ = bar.Set64(n)
				} else {
					line()
				}
			}
		}
	}()
	return func() { close(stop); <-finished }
}
