package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parley-chat/parley/events"
	"github.com/parley-chat/parley/infra/kafka"
	"github.com/parley-chat/parley/infra/postgres"
	"github.com/parley-chat/parley/infra/redis"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/projections/cache"
	"github.com/parley-chat/parley/projections/store"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// replayConfig is what `parley replay` was asked for.
type replayConfig struct {
	kafka       kafka.Config
	postgres    postgres.Config
	redis       redis.Config
	store       bool
	cache       bool
	from        string
	progressOut io.Writer
	terminal    bool
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
	n, err := runReplay(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d events\n", n)
	return nil
}

func parseReplay(args []string, stdout io.Writer) (replayConfig, error) {
	f := newFlags("replay", stdout)
	brokers := f.string("kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers")
	topic := f.string("topic", events.DefaultConversationTopic, "conversation topic")
	partitions := f.int("partitions", events.DefaultPartitions, "partitions of the conversation topic, 1..10000 (checked against the topic)")
	epoch := f.int("log-epoch", 1, fmt.Sprintf("log epoch of msgids (1..%d), the servers'", events.MaxEpoch))
	which := f.string("projection", "all", "store, cache or all")
	from := f.string("from", "earliest", "earliest, or an RFC 3339 time to replay from")
	pgDSN := f.secret("postgres-dsn", "PostgreSQL of the store (may hold a password); required for store and all")
	pgSchema := f.string("postgres-schema", postgres.DefaultSchema, "PostgreSQL schema")
	redisAddr := f.string("redis-addr", "", "Redis host:port of the cache; required for cache and all")
	redisPrefix := f.string("redis-prefix", redis.DefaultPrefix, "prefix of Redis keys; empty means the default")
	if err := f.parse(args); err != nil {
		return replayConfig{}, err
	}
	cfg := replayConfig{
		kafka:    kafka.Config{Topic: *topic, Partitions: int32(*partitions), Epoch: uint8(*epoch)},
		postgres: postgres.Config{DSN: *pgDSN, Schema: *pgSchema},
		redis:    redis.Config{Addr: *redisAddr, Prefix: *redisPrefix},
		from:     *from,
	}
	var err error
	cfg.kafka.Brokers, err = brokerList(*brokers)
	f.checkErr("kafka-brokers", err)
	f.check("topic", validTopic(*topic), "want 1..249 letters, digits, '.', '_' or '-'")
	f.check("partitions", *partitions >= 1 && *partitions <= 10000, "want 1..10000")
	f.check("log-epoch", *epoch >= 1 && *epoch <= events.MaxEpoch, "want 1..%d", events.MaxEpoch)
	switch *which {
	case "store":
		cfg.store = true
	case "cache":
		cfg.cache = true
	case "all":
		cfg.store, cfg.cache = true, true
	case "conversations", "groups":
		f.check("projection", false, "the conversation list and groups live in memory in every gateway and are rebuilt from the log at each start; restart the gateways to rebuild them (want store, cache or all)")
	default:
		f.check("projection", false, "want store, cache or all")
	}
	_, err = startAt(*from, false)
	f.checkErr("from", err)
	if *pgDSN != "" {
		_, err := pgxpool.ParseConfig(*pgDSN)
		f.check("postgres-dsn", err == nil, "cannot parse: want postgres://user:password@host:5432/db?... or key=value pairs")
	}
	f.check("postgres-schema", postgres.ValidSchema(*pgSchema), "want lowercase letters, digits and '_', at most 63 bytes, not starting with a digit")
	if *redisAddr != "" {
		f.checkErr("redis-addr", hostPort(*redisAddr, 1))
	}
	if cfg.store && *pgDSN == "" {
		f.fail(fmt.Errorf("replaying the store needs %s", f.name("postgres-dsn")))
	}
	if cfg.cache && *redisAddr == "" {
		f.fail(fmt.Errorf("replaying the cache needs %s", f.name("redis-addr")))
	}
	return cfg, f.err()
}

// runReplay rebuilds the chosen read models from the log: it reads every
// partition from the start (or a time) to the end it finds when it begins,
// applies each record with the same idempotent projection code the
// projector runs, then records the progress it made. The cluster may keep
// serving meanwhile: writes that race with the live projector are
// idempotent.
func runReplay(ctx context.Context, cfg replayConfig) (int64, error) {
	l, err := kafka.Open(cfg.kafka)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	epoch := l.Epoch()
	to, err := l.EndOffsets()
	if err != nil {
		return 0, err
	}
	from, err := l.StartOffsets()
	if err != nil {
		return 0, err
	}
	fromLogStart := cfg.from == "earliest"
	if !fromLogStart {
		at, err := time.Parse(time.RFC3339, cfg.from)
		if err != nil {
			return 0, fmt.Errorf("--from %q: want earliest or an RFC 3339 time", cfg.from)
		}
		if from, err = l.OffsetsAt(at); err != nil {
			return 0, err
		}
	}

	var targets []projection
	var trackers []interface {
		projections.Tracker
		Close() error
	}
	epochTag := fmt.Sprintf("@e%d", epoch)
	if cfg.store {
		pool, err := postgres.Open(ctx, cfg.postgres)
		if err != nil {
			return 0, err
		}
		defer pool.Close()
		pr, err := store.NewPostgresProgress(ctx, pool, store.PostgresProgressConfig{Projection: store.Name + epochTag})
		if err != nil {
			return 0, err
		}
		trackers = append(trackers, pr)
		targets = append(targets, projection{name: store.Name, p: store.NewProjection(store.NewGroupCommit(store.NewPostgres(pool), 0))})
	}
	if cfg.cache {
		rdb, err := redis.Open(ctx, cfg.redis)
		if err != nil {
			return 0, err
		}
		defer rdb.Close()
		c, err := cache.NewRedis(rdb, cache.RedisConfig{Prefix: cfg.redis.Prefix})
		if err != nil {
			return 0, err
		}
		pr, err := cache.NewRedisProgress(rdb, cache.RedisProgressConfig{Prefix: cfg.redis.Prefix + epochTag[1:] + ":"})
		if err != nil {
			return 0, err
		}
		trackers = append(trackers, pr)
		targets = append(targets, projection{name: cache.Name, p: cache.NewProjection(c, epoch, fromLogStart)})
	}

	var total int64
	for p, end := range to {
		if end > from[p] {
			total += end - from[p]
		}
	}
	pos := make([]atomic.Int64, len(to))
	for p := range to {
		pos[p].Store(from[p])
	}
	var done atomic.Int64
	stopProgress := showProgress(cfg, total, &done, pos, to)
	err = l.ReadRange(ctx, from, to, func(r kafka.RawRecord) error {
		rec, err := projections.Decode(r.Name, r.Payload, events.Position{Partition: r.Partition, Offset: r.Offset}, epoch, r.Timestamp)
		if err == nil {
			for _, t := range targets {
				if err := applyWithRetry(ctx, t, rec); err != nil {
					return err
				}
			}
		}
		var poison *projections.PoisonError
		if err != nil && !errors.Is(err, events.ErrUnknownEvent) && !errors.As(err, &poison) {
			return err
		}
		pos[r.Partition].Store(r.Offset + 1)
		done.Add(1)
		return nil
	})
	stopProgress()
	if err != nil {
		return done.Load(), err
	}
	// Everything below the end is applied: say so, for readers waiting on it.
	for _, tr := range trackers {
		for p, end := range to {
			if end > 0 {
				tr.Advance(p, end-1)
			}
		}
		if err := tr.Close(); err != nil {
			return done.Load(), err
		}
	}
	return done.Load(), nil
}

// applyWithRetry applies rec, retrying transient errors a few times.
func applyWithRetry(ctx context.Context, t projection, rec projections.Record) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = t.p.Apply(ctx, rec); err == nil {
			return nil
		}
		var poison *projections.PoisonError
		if errors.As(err, &poison) {
			return nil // skipped, as the projector does
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s at %d/%d: %w", t.name, rec.Position.Partition, rec.Position.Offset, err)
}

// projection is one replay target.
type projection struct {
	name string
	p    projections.Projection
}

// showProgress draws a bar on a terminal, or writes a plain line every
// second otherwise: events done, events per second, ETA and where each
// partition stands. It returns the function that stops it.
func showProgress(cfg replayConfig, total int64, done *atomic.Int64, pos []atomic.Int64, to map[int32]int64) func() {
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
		n := done.Load()
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
			parts = append(parts, fmt.Sprintf("%d:%d/%d", p, pos[p].Load(), to[int32(p)]))
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
					_ = bar.Set64(done.Load())
					_ = bar.Finish()
					fmt.Fprintln(cfg.progressOut)
				} else {
					line()
				}
				return
			case <-t.C:
				if bar != nil {
					_ = bar.Set64(done.Load())
				} else {
					line()
				}
			}
		}
	}()
	return func() { close(stop); <-finished }
}
